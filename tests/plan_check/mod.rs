//! The one way the snapshot tests turn a spec and a recorded live state
//! into the plan users read: validate the YAML, diff it against the live
//! JSON (as `live::observe` records it), render text and JSON.

use std::path::Path;

use pgspec::model::Deployment;
use pgspec::plan::{self, render};

/// The plan of a spec against a recorded live state.
pub fn plan(desired_yaml: &str, live_json: &str) -> plan::Plan {
    let spec = pgspec::spec::load_str(Path::new("spec.yaml"), desired_yaml)
        .and_then(|loaded| loaded.validate())
        .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)))
        .spec;
    let live: Deployment = serde_json::from_str(live_json).expect("live json");
    plan::diff(&spec.deployment, &live, &spec.options)
}

/// The rendered text (unmanaged objects listed) and JSON of the plan.
pub fn renderings(desired_yaml: &str, live_json: &str) -> (String, String) {
    let plan = plan(desired_yaml, live_json);
    let text = render::text(
        &plan,
        render::TextOptions {
            color: false,
            show_unmanaged: true,
        },
    );
    (text, render::json(&plan))
}
