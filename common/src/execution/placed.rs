//! A plan's placements as the execution machine takes them.

use crate::model::Format;
use crate::predict::Assignment;
use crate::view::FabricView;

/// A plan as the execution machine takes it.
pub struct Placed {
    /// Primary placement of each stage (indices of the view).
    pub assign: Vec<Assignment>,
    /// Shadow of each stage.
    pub shadow: Vec<Option<Assignment>>,
    /// The digest that names the plan in every booking.
    pub digest: u64,
}

/// A plan's placements as indices of `view`, with the digest that names
/// the plan in every booking (a shadow whose node left the view is
/// dropped). Shared by both actuators and the many-agent simulator.
pub fn placed(view: &FabricView, job_id: &str, plan: &crate::plan::Plan) -> Result<Placed, String> {
    let idx = |node: &str, format: Format| {
        view.node_index(node)
            .map(|n| Assignment { node: n, format })
            .ok_or_else(|| format!("node '{node}' of the plan is not in the fabric"))
    };
    let assign = plan.placements.iter().map(|p| idx(&p.node, p.format)).collect::<Result<Vec<_>, _>>()?;
    let shadow = plan.shadow.iter().map(|s| s.as_ref().and_then(|p| idx(&p.node, p.format).ok())).collect();
    let digest = plan_digest(job_id, plan.placements.iter().map(|p| (p.node.as_str(), p.format)));
    Ok(Placed { assign, shadow, digest })
}

/// A digest of a plan's placements, naming it in [`RunKey`]s: two plans of
/// the same job that differ anywhere get different digests.
pub fn plan_digest<'a>(job_id: &str, placements: impl IntoIterator<Item = (&'a str, Format)>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    };
    eat(job_id.as_bytes());
    for (node, f) in placements {
        eat(node.as_bytes());
        eat(&[f.index() as u8]);
    }
    h
}
