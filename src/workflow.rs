//! API-format workflows as users hand them to comfytop: loading a file with errors that say
//! where, refusing the UI format, `--set NODE.INPUT=VALUE` overrides, fresh random seeds, and
//! the request that requeues a prompt under this client's id.

use rand::Rng;
use serde_json::{Map, Value};

use crate::comfy::api::PromptRequest;

/// Inputs that hold a sampler seed.
const SEED_INPUTS: &[&str] = &["seed", "noise_seed"];

/// ComfyUI's largest seed (`0xffffffffffffffff`); kept within JSON's exact integer range.
const MAX_SEED: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    #[error("{source_name} is not valid JSON: {message} at line {line}, column {column}")]
    Json {
        source_name: String,
        message: String,
        line: usize,
        column: usize,
    },
    #[error(
        "{0} is a workflow in the UI format (it has \"nodes\" and \"links\"); comfytop needs the API \
         format: in ComfyUI use Workflow > Export (API) and submit that file"
    )]
    UiFormat(String),
    #[error(
        "{0} is not an API-format workflow: expected an object of node ids to \
         {{\"class_type\", \"inputs\"}}"
    )]
    NotAWorkflow(String),
    #[error("--set {0}: expected NODE.INPUT=VALUE, e.g. 3.steps=30 or 6.text=\"a cat\"")]
    BadOverride(String),
    #[error("--set {spec}: the workflow has no node \"{node}\"")]
    NoSuchNode { spec: String, node: String },
}

/// Parses an API-format workflow from `text`. A file holding `{"prompt": {...}}` (as saved from a
/// request body) is accepted too. `source_name` names the file in errors.
pub fn parse_api_workflow(text: &str, source_name: &str) -> Result<Value, WorkflowError> {
    let value: Value = serde_json::from_str(text).map_err(|e| WorkflowError::Json {
        source_name: source_name.to_string(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string(),
        line: e.line(),
        column: e.column(),
    })?;
    let value = match value {
        Value::Object(mut map) if map.contains_key("prompt") && map["prompt"].is_object() => {
            map.remove("prompt").unwrap_or_default()
        }
        other => other,
    };
    let Value::Object(map) = &value else {
        return Err(WorkflowError::NotAWorkflow(source_name.to_string()));
    };
    if map.contains_key("nodes") && map.contains_key("links") {
        return Err(WorkflowError::UiFormat(source_name.to_string()));
    }
    let is_node = |v: &Value| v.get("class_type").is_some_and(Value::is_string);
    if map.is_empty() || !map.values().all(is_node) {
        return Err(WorkflowError::NotAWorkflow(source_name.to_string()));
    }
    Ok(value)
}

/// Applies `NODE.INPUT=VALUE`. VALUE is read as JSON when it parses (numbers, booleans, quoted
/// strings, lists), else taken as a plain string.
pub fn apply_override(workflow: &mut Value, spec: &str) -> Result<(), WorkflowError> {
    let bad = || WorkflowError::BadOverride(spec.to_string());
    let (target, raw_value) = spec.split_once('=').ok_or_else(bad)?;
    let (node, input) = target.split_once('.').ok_or_else(bad)?;
    if node.is_empty() || input.is_empty() {
        return Err(bad());
    }
    let value = serde_json::from_str(raw_value).unwrap_or_else(|_| Value::String(raw_value.into()));
    let inputs = workflow
        .get_mut(node)
        .and_then(|n| n.as_object_mut())
        .ok_or_else(|| WorkflowError::NoSuchNode {
            spec: spec.to_string(),
            node: node.to_string(),
        })?
        .entry("inputs")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(inputs) = inputs {
        inputs.insert(input.to_string(), value);
    }
    Ok(())
}

/// Gives every literal `seed` / `noise_seed` input a new random value; linked seeds (from another
/// node) are left alone. Returns how many were changed.
pub fn randomize_seeds(workflow: &mut Value, rng: &mut impl Rng) -> usize {
    let mut changed = 0;
    let Value::Object(nodes) = workflow else {
        return 0;
    };
    for node in nodes.values_mut() {
        let Some(Value::Object(inputs)) = node.get_mut("inputs") else {
            continue;
        };
        for (name, value) in inputs.iter_mut() {
            if SEED_INPUTS.contains(&name.as_str()) && value.is_number() {
                *value = Value::from(rng.random_range(0..=MAX_SEED));
                changed += 1;
            }
        }
    }
    changed
}

/// The request that queues `prompt` again, as PROTOCOL.md describes: the same graph and
/// extra_data, but this client's id so the live progress and previews come to us.
pub fn requeue_request(
    prompt: &Value,
    extra_data: &Map<String, Value>,
    our_client_id: &str,
    front: bool,
) -> PromptRequest {
    let mut extra = extra_data.clone();
    extra.remove("client_id");
    PromptRequest {
        prompt: prompt.clone(),
        client_id: Some(our_client_id.to_string()),
        extra_data: (!extra.is_empty()).then_some(extra),
        front: front.then_some(true),
        ..PromptRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;


    #[test]
    fn every_recorded_workflow_loads() {
        for entry in std::fs::read_dir(format!("{}/workflows", crate::FIXTURES)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.display().to_string();
            parse_api_workflow(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn ui_format_is_refused_with_advice() {
        let err = parse_api_workflow(r#"{"nodes": [], "links": [], "version": 0.4}"#, "w.json")
            .unwrap_err();
        assert!(matches!(err, WorkflowError::UiFormat(_)));
        assert!(err.to_string().contains("Export (API)"), "{err}");
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let err =
            parse_api_workflow("{\n  \"1\": {\n    \"class_type\": ,\n", "w.json").unwrap_err();
        let WorkflowError::Json { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (3, 19));
        assert!(
            err.to_string()
                .starts_with("w.json is not valid JSON: expected value at line 3")
        );
    }

    #[test]
    fn a_request_body_file_is_accepted() {
        let v = parse_api_workflow(
            r#"{"prompt": {"1": {"class_type": "X", "inputs": {}}}}"#,
            "b",
        )
        .unwrap();
        assert_eq!(v["1"]["class_type"], "X");
        assert!(parse_api_workflow("[1]", "b").is_err());
        assert!(parse_api_workflow(r#"{"1": {"inputs": {}}}"#, "b").is_err());
    }

    #[test]
    fn overrides_parse_json_or_take_a_string() {
        let mut w = json!({"3": {"class_type": "KSampler", "inputs": {"steps": 20}}});
        apply_override(&mut w, "3.steps=30").unwrap();
        apply_override(&mut w, "3.sampler_name=euler").unwrap();
        apply_override(&mut w, "3.denoise=0.5").unwrap();
        assert_eq!(
            w["3"]["inputs"],
            json!({"steps": 30, "sampler_name": "euler", "denoise": 0.5})
        );
        assert!(matches!(
            apply_override(&mut w, "9.steps=1"),
            Err(WorkflowError::NoSuchNode { .. })
        ));
        assert!(matches!(
            apply_override(&mut w, "steps=1"),
            Err(WorkflowError::BadOverride(_))
        ));
    }

    #[test]
    fn only_literal_seed_inputs_change() {
        let mut w = json!({
            "1": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
            "2": {"class_type": "SamplerCustom", "inputs": {"noise_seed": 2}},
            "3": {"class_type": "KSampler", "inputs": {"seed": ["9", 0]}}
        });
        let before = w.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(randomize_seeds(&mut w, &mut rng), 2);
        assert_ne!(w["1"]["inputs"]["seed"], before["1"]["inputs"]["seed"]);
        assert_ne!(
            w["2"]["inputs"]["noise_seed"],
            before["2"]["inputs"]["noise_seed"]
        );
        assert_eq!(w["1"]["inputs"]["steps"], 20);
        assert_eq!(w["1"]["inputs"]["model"], json!(["4", 0]));
        assert_eq!(w["3"], before["3"]);
    }

    #[test]
    fn requeue_uses_our_client_id_and_keeps_extra_data() {
        let extra: Map<String, Value> =
            serde_json::from_value(json!({"client_id": "web-ui", "extra_pnginfo": {"a": 1}}))
                .unwrap();
        let prompt = json!({"1": {"class_type": "X", "inputs": {}}});
        let req = requeue_request(&prompt, &extra, "me", true);
        assert_eq!(req.client_id.as_deref(), Some("me"));
        assert_eq!(req.prompt, prompt);
        assert_eq!(req.front, Some(true));
        let extra = req.extra_data.unwrap();
        assert!(!extra.contains_key("client_id"));
        assert_eq!(extra["extra_pnginfo"], json!({"a": 1}));
    }
}
