//! One cell of the fault matrix: a store and an issuer, started once per test, installed
//! on each run's dev cluster, and read back through their own tools (the bao CLI, boto3,
//! the reference issuer's records), never through the operator's code.

use std::collections::{BTreeMap, BTreeSet};

use apikey_operator::api::apikey::ApiKey;
use apikey_operator::reference_issuer::ReferenceIssuer;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use super::super::harness::*;
use super::super::http_issuer::{http_client, widgetjar};
use crate::support::invariants::state_key_id;
use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Kubernetes,
    Vault,
    Aws,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    Generate,
    Http,
    AwsIam,
}

/// Key id → key material, as a store or a Secret holds them.
pub type Keys = BTreeMap<String, String>;

/// What a store holds for one ApiKey (no Debug: it holds key material).
#[derive(Default)]
pub struct Stored {
    pub keys: Keys,
    /// The current and previous keys' ids, where the store keeps slots readers see.
    pub slots: Option<(Option<String>, Option<String>)>,
}

impl Stored {
    fn of_slots(
        current: Option<(String, String)>,
        previous: Option<(String, String)>,
        pending: Option<(String, String)>,
    ) -> Stored {
        let id = |k: &Option<(String, String)>| k.as_ref().map(|(id, _)| id.clone());
        Stored {
            slots: Some((id(&current), id(&previous))),
            keys: [current, previous, pending].into_iter().flatten().collect(),
        }
    }
}

/// The servers a cell needs, shared by its runs (each run names its ApiKey apart).
pub struct Backends {
    pub store: StoreKind,
    pub issuer: IssuerKind,
    bao: Option<OpenBao>,
    moto: Option<Moto>,
    /// Between the operator and Secrets Manager, for the AWS store's outages.
    aws_store_proxy: Option<Outage>,
}

/// The cell installed on one run's dev cluster.
pub struct Run<'a> {
    b: &'a Backends,
    client: Client,
    /// A reference issuer per run: its records are this run's alone.
    widgetjar: Option<(ReferenceIssuer, String)>,
}

impl Backends {
    pub async fn start(store: StoreKind, issuer: IssuerKind) -> Backends {
        let bao = match store {
            StoreKind::Vault => Some(OpenBao::start().await),
            _ => None,
        };
        let moto = match (store, issuer) {
            (StoreKind::Aws, _) | (_, IssuerKind::AwsIam) => Some(Moto::start().await),
            _ => None,
        };
        let aws_store_proxy = match &moto {
            Some(m) if store == StoreKind::Aws => Some(Outage::start(&m.endpoint).await),
            _ => None,
        };
        Backends {
            store,
            issuer,
            bao,
            moto,
            aws_store_proxy,
        }
    }

    fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("moto runs for AWS cells")
    }

    /// Creates the cell's KeyIssuer and KeyStore on a fresh dev cluster.
    pub async fn install(&self, c: &Client) -> Run<'_> {
        let widgetjar = match self.issuer {
            IssuerKind::Generate => {
                issuer(c).await;
                None
            }
            IssuerKind::Http => Some(widgetjar(c).await),
            IssuerKind::AwsIam => {
                super::super::aws_iam::iam_issuer(c, self.moto()).await;
                None
            }
        };
        match self.store {
            StoreKind::Kubernetes => {}
            StoreKind::Vault => {
                let bao = self.bao.as_ref().expect("bao runs for Vault cells");
                super::super::vault::token_store(c, bao).await;
            }
            StoreKind::Aws => {
                let proxy = self
                    .aws_store_proxy
                    .as_ref()
                    .expect("a proxy for AWS cells");
                let through = json!({"endpointUrl": proxy.endpoint});
                super::super::aws::aws_store(c, self.moto(), through).await
            }
        }
        Run {
            b: self,
            client: c.clone(),
            widgetjar,
        }
    }
}

impl Run<'_> {
    /// An ApiKey of this cell: one consumer, a one-second overlap, the default fields.
    pub fn apikey(&self, name: &str, deletion_policy: &str) -> Value {
        let mut ak = apikey(
            name,
            json!({"every": "1h", "overlap": "1s"}),
            json!({"deletionPolicy": deletion_policy,
                "consumers": [{"kind": "Deployment", "name": "app"}]}),
        );
        let spec = &mut ak["spec"];
        match self.b.issuer {
            IssuerKind::Generate => {}
            IssuerKind::Http => spec["issuerRef"]["name"] = "widgetjar".into(),
            IssuerKind::AwsIam => {
                spec["issuerRef"]["name"] = "iam".into();
                spec["scopes"] = json!([]);
            }
        }
        match self.b.store {
            StoreKind::Kubernetes => {}
            StoreKind::Vault => spec["storeRef"] = json!({"name": "vault"}),
            StoreKind::Aws => spec["storeRef"] = json!({"name": "aws"}),
        }
        ak
    }

    /// The ids of the keys the issuer would accept now; `None` where the issuer keeps no
    /// record (`generate`: the operator makes the key itself).
    pub async fn valid_at_issuer(&self, name: &str) -> Option<BTreeSet<String>> {
        match self.b.issuer {
            IssuerKind::Generate => None,
            IssuerKind::Http => {
                let (issuer, _) = self.widgetjar.as_ref().expect("a reference issuer");
                Some(issuer.valid_keys().into_iter().map(|k| k.id).collect())
            }
            IssuerKind::AwsIam => {
                let active = self
                    .b
                    .moto()
                    .boto(&format!(
                        "iam = boto3.client('iam', **kw)\n\
                         try:\n    out([k['AccessKeyId'] for k in iam.list_access_keys(UserName='apikey-default-{name}')['AccessKeyMetadata'] if k['Status'] == 'Active'])\n\
                         except iam.exceptions.NoSuchEntityException:\n    out([])"
                    ))
                    .await;
                Some(serde_json::from_value(active).unwrap())
            }
        }
    }

    /// The keys the store holds for `name`; `None` when its entry is gone (or, in
    /// Secrets Manager, scheduled for deletion).
    pub async fn held_in_store(&self, name: &str) -> Option<Stored> {
        match self.b.store {
            StoreKind::Kubernetes => {
                let state = Api::<Secret>::default_namespaced(self.client.clone())
                    .get_opt(&format!("{name}-apikey-state"))
                    .await
                    .unwrap()?;
                let keys = state.data.unwrap_or_default().into_iter();
                Some(Stored {
                    keys: keys
                        .map(|(k, v)| (state_key_id(&k).expect("a key's field"), text(&v.0)))
                        .collect(),
                    slots: None,
                })
            }
            StoreKind::Vault => {
                let bao = self.b.bao.as_ref().expect("bao");
                let entry = bao
                    .kv_get("secret", &format!("apikeys/default/{name}"))
                    .await?;
                let data = &entry["data"];
                let key = |key: &str, id: &str| -> Option<(String, String)> {
                    Some((data[id].as_str()?.into(), data[key].as_str()?.into()))
                };
                let current = key("api-key", "api-key-id");
                let previous = key("api-key-previous", "api-key-id-previous");
                let pending = key("api-key-pending", "api-key-id-pending");
                Some(Stored::of_slots(current, previous, pending))
            }
            StoreKind::Aws => {
                let labelled = self
                    .b
                    .moto()
                    .boto(&format!(
                        "try:\n    d = sm.describe_secret(SecretId='apikeys/default/{name}')\n\
                         except sm.exceptions.ResourceNotFoundException:\n    d = None\n\
                         if d is None or 'DeletedDate' in d:\n    out(None)\n\
                         else:\n    out([[stages, json.loads(sm.get_secret_value(SecretId=d['Name'], VersionId=v)['SecretString'])]\n\
                                      for v, stages in d.get('VersionIdsToStages', {{}}).items() if stages])"
                    ))
                    .await;
                let versions: Option<Vec<(Vec<String>, Value)>> =
                    serde_json::from_value(labelled).unwrap();
                let versions = versions?;
                let at = |label: &str| {
                    let (_, v) = versions
                        .iter()
                        .find(|(l, _)| l.iter().any(|l| l == label))?;
                    match (v["api-key-id"].as_str(), v["api-key"].as_str()) {
                        (Some(id), Some(key)) => Some((id.to_string(), key.to_string())),
                        // AWSCURRENT cannot be removed, only moved: onto an empty version
                        // when its key goes (the store's documented layout).
                        _ if v.as_object().is_some_and(|o| o.is_empty()) => None,
                        _ => Some((
                            format!("a version without a key: {:?}", keys_of(v)),
                            String::new(),
                        )),
                    }
                };
                Some(Stored::of_slots(
                    at("AWSCURRENT"),
                    at("AWSPREVIOUS"),
                    at("AWSPENDING"),
                ))
            }
        }
    }

    /// Whether the issuer accepts `material` as key `id`, where it can say so.
    pub async fn accepts(&self, id: &str, material: &str) -> bool {
        let Some((_, url)) = &self.widgetjar else {
            return true;
        };
        let whoami = http_client()
            .get(format!("{url}/whoami"))
            .bearer_auth(material)
            .send()
            .await
            .unwrap();
        if !whoami.status().is_success() {
            return false;
        }
        let who: Value = whoami.json().await.unwrap();
        who["id"].as_str() == Some(id)
    }

    /// The current and previous keys a consumer Secret offers.
    pub fn offered(secret: &Secret) -> Keys {
        [
            ("api-key", "api-key-id"),
            ("api-key-previous", "api-key-id-previous"),
        ]
        .into_iter()
        .filter_map(|(key, id)| Some((data(secret, id)?, data(secret, key)?)))
        .collect()
    }

    /// The reference issuer refuses its next `requests` requests (503); 0 ends that.
    pub fn issuer_outage(&self, requests: usize) {
        let (issuer, _) = self.widgetjar.as_ref().expect("a reference issuer");
        issuer.refuse_next_requests(requests);
    }

    /// The store goes down (`true`: OpenBao sealed, Secrets Manager unreachable, the
    /// Kubernetes API failing every Secret request but watches) or comes back with all it
    /// held (`false`). The API answers 500: kube's client retries a 503 by itself, for
    /// minutes, so the operator would never meet that outage.
    pub async fn store_outage(&self, down: bool, cluster: &kube_devcluster::DevCluster) {
        match (self.b.store, &self.b.bao, &self.b.aws_store_proxy) {
            (StoreKind::Vault, Some(bao), _) if down => bao.seal().await,
            (StoreKind::Vault, Some(bao), _) => bao.unseal().await,
            (StoreKind::Aws, _, Some(proxy)) => proxy.set_down(down),
            (StoreKind::Kubernetes, _, _) if down => {
                for verb in ["get", "create", "update", "patch", "delete"] {
                    cluster.inject(kube_devcluster::Fault::on(verb, "secrets").status(500));
                }
            }
            (StoreKind::Kubernetes, _, _) => cluster.clear_faults(),
            _ => panic!("no store outage for {:?}", self.b.store),
        }
    }

    pub fn apikeys(&self) -> Api<ApiKey> {
        Api::default_namespaced(self.client.clone())
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn store(&self) -> StoreKind {
        self.b.store
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn keys_of(v: &Value) -> Vec<&String> {
    v.as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default()
}
