//! `spec.secret.template`: more consumer Secret fields rendered from the key (an `.env`
//! line, a JSON document, a URL). MiniJinja without includes, macros or auto-escaping,
//! with undefined variables an error (a typo must not render an empty key) and fuel and
//! size limits (a template is user input).

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use secrecy::{ExposeSecret, SecretString};

/// Instructions one template may run (loops over `range()` included).
const FUEL: u64 = 100_000;
/// What one rendered field may hold: the whole Secret is limited to 1 MiB.
const MAX_RENDERED: usize = 64 * 1024;

/// What a template sees.
pub struct Vars<'a> {
    pub key: &'a SecretString,
    pub key_id: &'a str,
    pub fingerprint: &'a str,
    pub previous: Option<(&'a str, &'a SecretString)>,
    pub name: &'a str,
    pub namespace: &'a str,
}

/// Checks every template against stand-in values: syntax, unknown variables and filters,
/// and field names, so a mistake is an InvalidSpec before any key exists.
pub fn check(templates: &BTreeMap<String, String>) -> Result<(), String> {
    let stand_in = SecretString::from("sk_example_0123456789");
    for with_previous in [false, true] {
        let vars = Vars {
            key: &stand_in,
            key_id: "key-id",
            fingerprint: "sha256:000000000000",
            previous: with_previous.then_some(("previous-id", &stand_in)),
            name: "name",
            namespace: "namespace",
        };
        render(templates, &vars)?;
    }
    Ok(())
}

/// Each field's rendered value; errors name the field and never quote a key.
pub fn render(
    templates: &BTreeMap<String, String>,
    vars: &Vars<'_>,
) -> Result<BTreeMap<String, String>, String> {
    // Checked on every reconcile: most ApiKeys have no templates, and need no engine.
    if templates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    // A file that ends in a newline (an .env) keeps it.
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    let context = minijinja::context! {
        key => vars.key.expose_secret(),
        keyId => vars.key_id,
        fingerprint => vars.fingerprint,
        previousKey => vars.previous.map(|(_, k)| k.expose_secret()),
        previousKeyId => vars.previous.map(|(id, _)| id),
        name => vars.name,
        namespace => vars.namespace,
    };
    let mut rendered = BTreeMap::new();
    for (field, source) in templates {
        if !is_secret_key(field) {
            return Err(format!(
                "secret.template field {field:?} is not a valid Secret key (letters, digits, '-', '_' and '.')"
            ));
        }
        let failed = |e: minijinja::Error| {
            let mut message = format!("secret.template[{field:?}]: {e}");
            for secret in [Some(vars.key), vars.previous.map(|(_, k)| k)]
                .into_iter()
                .flatten()
            {
                message = message.replace(secret.expose_secret(), "[redacted]");
            }
            message
        };
        let template = env.template_from_named_str(field, source).map_err(failed)?;
        let value = template.render(context.clone()).map_err(failed)?;
        if value.len() > MAX_RENDERED {
            return Err(format!(
                "secret.template[{field:?}] renders to more than {} KiB",
                MAX_RENDERED / 1024
            ));
        }
        rendered.insert(field.clone(), value);
    }
    Ok(rendered)
}

/// A Secret data key as kube-apiserver accepts it.
fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn vars<'a>(key: &'a SecretString, previous: Option<(&'a str, &'a SecretString)>) -> Vars<'a> {
        Vars {
            key,
            key_id: "k1",
            fingerprint: "sha256:abc",
            previous,
            name: "billing",
            namespace: "shop",
        }
    }

    #[test]
    fn renders_env_json_and_url_fields() {
        let key = SecretString::from("sk_live_a/b\"c");
        let t = templates(&[
            (
                ".env",
                "WIDGETJAR_KEY={{ key }}\nWIDGETJAR_KEY_ID={{ keyId }}\n",
            ),
            (
                "config.json",
                r#"{"apiKey": {{ key | tojson }}, "app": "{{ namespace }}/{{ name }}"}"#,
            ),
            (
                "url",
                "https://user:{{ key | urlencode }}@api.widgetjar.example",
            ),
            (
                "both",
                "{{ key }}{% if previousKey %},{{ previousKey }}{% endif %}",
            ),
        ]);
        let out = render(&t, &vars(&key, None)).unwrap();
        assert_eq!(
            out[".env"],
            "WIDGETJAR_KEY=sk_live_a/b\"c\nWIDGETJAR_KEY_ID=k1\n"
        );
        let json: serde_json::Value = serde_json::from_str(&out["config.json"]).unwrap();
        assert_eq!(json["apiKey"], "sk_live_a/b\"c");
        assert_eq!(json["app"], "shop/billing");
        // As Jinja2's: `/` stays (a path character); quotes and the rest are escaped.
        assert_eq!(
            out["url"],
            "https://user:sk_live_a/b%22c@api.widgetjar.example"
        );
        assert_eq!(out["both"], "sk_live_a/b\"c");
        let old = SecretString::from("sk_old");
        let out = render(&t, &vars(&key, Some(("k0", &old)))).unwrap();
        assert_eq!(out["both"], "sk_live_a/b\"c,sk_old");
    }

    #[test]
    fn mistakes_are_named_and_never_quote_the_key() {
        for (field, source, expected) in [
            ("a", "{{ kye }}", "undefined value"),
            ("a", "{{ key ", "syntax error"),
            ("a", "{{ key | nosuchfilter }}", "unknown filter"),
            ("a", "{% include 'x' %}", "unknown statement include"),
            ("a b", "{{ key }}", "not a valid Secret key"),
            (
                "a",
                "{% for i in range(100000) %}{{ i }}{% endfor %}",
                "fuel",
            ),
        ] {
            let e = check(&templates(&[(field, source)])).unwrap_err();
            assert!(e.contains(expected), "{source}: {e}");
        }
        let key = SecretString::from("sk_secret_value");
        let e = render(&templates(&[("a", "{{ key + 1 }}")]), &vars(&key, None)).unwrap_err();
        assert!(e.starts_with("secret.template[\"a\"]"), "{e}");
        assert!(!e.contains("sk_secret_value"), "{e}");
        let e = check(&templates(&[(
            "big",
            "{% for i in range(9000) %}{{ key }}{% endfor %}",
        )]));
        assert!(e.unwrap_err().contains("more than 64 KiB"));
    }

    proptest::proptest! {
        /// A template is user input: whatever it says, rendering ends (fuel), stays within
        /// its size, and an error never quotes the key.
        #[test]
        fn any_template_renders_bounded_or_fails_without_the_key(
            text in "(\\{\\{ ?(key|keyId|name|nope|key ~ key|range\\(9\\)) ?\\}\\}|\\{% ?(for i in range\\(99\\)|endfor|if key|endif) ?%\\}|[a-z=\\n{}%]){0,40}",
        ) {
            let key = SecretString::from("sk_live_SECRETVALUE");
            match render(&templates(&[("f", &text)]), &vars(&key, None)) {
                Ok(out) => proptest::prop_assert!(out["f"].len() <= MAX_RENDERED),
                Err(e) => proptest::prop_assert!(!e.contains("SECRETVALUE"), "{e}"),
            }
        }
    }
}
