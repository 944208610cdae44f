//! The pod a placed stage becomes. Pure: the same inputs give the same
//! object, byte for byte, so a retried or duplicated plan asks for the same
//! pod and the API server's AlreadyExists keeps it single.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use twinmesh_common::job::Compute;
use twinmesh_common::model::Format;
use twinmesh_common::scaling::Scaler;

/// Label: the job a pod belongs to.
pub const JOB_LABEL: &str = "twinmesh.io/job";
/// Label: the plan (a digest of its placements) the pod carries out.
pub const PLAN_LABEL: &str = "twinmesh.io/plan";
/// Label: the stage id.
pub const STAGE_LABEL: &str = "twinmesh.io/stage";
/// Label: the attempt (1 for the planned node, more for reruns).
pub const ATTEMPT_LABEL: &str = "twinmesh.io/attempt";
/// Label: the execution format the planner chose.
pub const FORMAT_LABEL: &str = "twinmesh.io/format";
/// Label on nodes and pods: the cluster (pool) name.
pub const CLUSTER_LABEL: &str = "dt.cluster.name";
/// Label on nodes: the cluster kind (datacenter, edge, …).
pub const CLUSTER_TYPE_LABEL: &str = "dt.cluster.type";
/// Label on nodes: the architecture, set by the kubelet.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// Label on nodes: the hostname, set by the kubelet; stage pods select it.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Label: who manages the pod.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Everything a stage's pod is made from.
#[derive(Clone, Debug)]
pub struct StagePod<'a> {
    /// Job id.
    pub job: &'a str,
    /// Plan digest ([`plan_digest`]).
    pub plan: &'a str,
    /// Stage id.
    pub stage: &'a str,
    /// Attempt, from 1.
    pub attempt: u32,
    /// Node the stage is placed on (Kubernetes node name).
    pub node: &'a str,
    /// Its cluster.
    pub cluster: &'a str,
    /// Format the planner chose.
    pub format: Format,
    /// The stage's demand in fabric units.
    pub compute: &'a Compute,
    /// Wall milliseconds the pod keeps its CPU busy.
    pub cpu_ms: u64,
    /// Image with the `twinmesh` binary.
    pub image: &'a str,
    /// Namespace for job pods.
    pub namespace: &'a str,
    /// Fabric → real resource scaling.
    pub scaler: Scaler,
}

/// FNV-1a, for short stable digests.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Lowercase alphanumerics and '-', no leading/trailing '-' (RFC 1123).
fn dns_part(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

/// The pod's name: `tm-<job>-<stage>` (`-r<attempt>` from the second
/// attempt on), made a valid DNS label; names over 63 characters keep a
/// prefix and end in a digest of the whole, so distinct stages never share
/// a name.
pub fn pod_name(job: &str, stage: &str, attempt: u32) -> String {
    let mut full = format!("tm-{}-{}", dns_part(job), dns_part(stage));
    if attempt > 1 {
        full.push_str(&format!("-r{attempt}"));
    }
    if full.len() <= 63 {
        return full;
    }
    let digest = format!("{:010x}", fnv(&full) & 0xff_ffff_ffff);
    let prefix = full[..52].trim_end_matches('-');
    format!("{prefix}-{digest}")
}

/// A label value (≤ 63 characters of `[A-Za-z0-9._-]`, alphanumeric at
/// both ends) standing for `s`.
pub fn label_value(s: &str) -> String {
    let v: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    let v = if v.len() > 63 { format!("{}-{:010x}", &v[..52], fnv(s) & 0xff_ffff_ffff) } else { v };
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// A short digest of a plan's placements: pods of one plan share it.
pub fn plan_digest(placements: &[(String, Format)]) -> String {
    let s: String = placements.iter().map(|(n, f)| format!("{n}/{f};")).collect();
    format!("{:012x}", fnv(&s) & 0xffff_ffff_ffff)
}

/// The pod for one stage attempt.
pub fn stage_pod(p: &StagePod<'_>) -> Pod {
    let res = p.scaler.to_pod(p.compute);
    let (cpu, mem) = res.quantities();
    let quantities: BTreeMap<String, Quantity> =
        [("cpu".to_string(), Quantity(cpu)), ("memory".to_string(), Quantity(mem))].into_iter().collect();
    let labels: BTreeMap<String, String> = [
        (JOB_LABEL, label_value(p.job)),
        (PLAN_LABEL, label_value(p.plan)),
        (STAGE_LABEL, label_value(p.stage)),
        (ATTEMPT_LABEL, p.attempt.to_string()),
        (FORMAT_LABEL, p.format.to_string()),
        (CLUSTER_LABEL, label_value(p.cluster)),
        (MANAGED_BY_LABEL, "twinmesh".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Label values are truncated; the annotations keep the exact ids.
    let annotations: BTreeMap<String, String> =
        [(JOB_LABEL.to_string(), p.job.to_string()), (STAGE_LABEL.to_string(), p.stage.to_string())]
            .into_iter()
            .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(p.job, p.stage, p.attempt)),
            namespace: Some(p.namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            // A hostname selector rather than spec.nodeName: the pod goes
            // through the scheduler, so a cordoned or tainted node (failure
            // injection) really refuses it, and the kubelet's admission
            // checks the scaled requests.
            node_selector: Some([(HOSTNAME_LABEL.to_string(), p.node.to_string())].into_iter().collect()),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(5),
            containers: vec![Container {
                name: "stage".into(),
                image: Some(p.image.to_string()),
                image_pull_policy: Some("IfNotPresent".into()),
                args: Some(vec!["work".into(), "--cpu-ms".into(), p.cpu_ms.to_string()]),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities.clone()),
                    limits: Some(quantities),
                    ..ResourceRequirements::default()
                }),
                termination_message_path: Some("/dev/termination-log".into()),
                termination_message_policy: Some("File".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute() -> Compute {
        Compute { cpu: 4.0, mem_gb: 2.0, duration_ms: 2000.0, gpu_vram_gb: 0.0 }
    }

    fn pod(attempt: u32) -> Pod {
        let c = compute();
        stage_pod(&StagePod {
            job: "video-3fa2b1c0",
            plan: "abc",
            stage: "encode",
            attempt,
            node: "k3d-dc-core-agent-0",
            cluster: "dc-core",
            format: Format::Native,
            compute: &c,
            cpu_ms: 2000,
            image: "twinmesh:dev",
            namespace: "twinmesh-jobs",
            scaler: Scaler::default(),
        })
    }

    #[test]
    fn pod_is_deterministic_scaled_and_labelled() {
        let p = pod(1);
        assert_eq!(p, pod(1));
        assert_eq!(p.metadata.name.as_deref(), Some("tm-video-3fa2b1c0-encode"));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[JOB_LABEL], "video-3fa2b1c0");
        assert_eq!(labels[STAGE_LABEL], "encode");
        assert_eq!(labels[CLUSTER_LABEL], "dc-core");
        assert_eq!(labels[PLAN_LABEL], "abc");
        let spec = p.spec.unwrap();
        assert_eq!(spec.node_selector.unwrap()[HOSTNAME_LABEL], "k3d-dc-core-agent-0");
        let c = &spec.containers[0];
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"].0, "40m");
        assert_eq!(req["memory"].0, "21Mi");
        assert_eq!(c.args.as_ref().unwrap(), &["work", "--cpu-ms", "2000"]);
        assert_eq!(pod(2).metadata.name.as_deref(), Some("tm-video-3fa2b1c0-encode-r2"));
    }

    #[test]
    fn names_are_valid_dns_labels_even_when_long() {
        let long = "x".repeat(80);
        let a = pod_name(&long, "Stage_One", 1);
        let b = pod_name(&long, "Stage_Two", 1);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        for n in [&a, &b, &pod_name("Job.With Dots", "--s--", 3)] {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{n}");
            assert!(!n.ends_with('-') && !n.starts_with('-'), "{n}");
        }
        assert_eq!(pod_name("Job.With Dots", "--s--", 3), "tm-job-with-dots-s-r3");
        let v = label_value(&format!("{long}!"));
        assert!(v.len() <= 63);
        assert_ne!(label_value(&format!("{long}a")), label_value(&format!("{long}b")));
    }
}
