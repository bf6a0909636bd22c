//! The shared harness, and the Widget custom resource these tests exercise the dev
//! cluster with.

pub use apikey_testkit::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::api::{Api, PostParams};
use kube::runtime::wait::conditions;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[kube(
    group = "example.apikey.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<i64>,
}

pub const WIDGET_CRD: &str = include_str!("widgets-crd.yaml");

pub fn widget(name: &str, size: i64) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            ..Default::default()
        },
    )
}

/// Installs the Widget CRD on a test cluster.
pub trait WidgetsExt {
    async fn install_widgets(&self) -> Api<Widget>;
}

impl WidgetsExt for TestCluster {
    /// Installs the Widget CRD and waits until it is established.
    async fn install_widgets(&self) -> Api<Widget> {
        let crd: CustomResourceDefinition = serde_yaml::from_str(WIDGET_CRD).expect("fixture");
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
        wait(
            crds.clone(),
            "widgets.example.apikey.dev",
            conditions::is_crd_established(),
        )
        .await;
        Api::default_namespaced(self.client.clone())
    }
}
