# The operator's Vault/OpenBao policy: its own folder of the KV v2 mount `secret`, nothing
# else. `destroy` removes the versions that held a revoked key; `metadata` records the
# entry's owner and deletes the entry under deletionPolicy Revoke.
path "secret/data/apikeys/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/apikeys/*" { capabilities = ["create", "read", "update", "delete"] }
path "secret/destroy/apikeys/*"  { capabilities = ["update"] }
