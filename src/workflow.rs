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
    /// The node has no such input, neither in the workflow nor (when the server could be asked)
    /// among the inputs its class accepts.
    #[error("{0}")]
    NoSuchInput(Box<MissingInput>),
}

/// What [`WorkflowError::NoSuchInput`] says: the override, and the names it may have meant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--set {spec}: node {node} ({class}) has no input \"{input}\"{}", no_input_hint(.close, .known, *.server_checked))]
pub struct MissingInput {
    pub spec: String,
    pub node: String,
    pub class: String,
    pub input: String,
    /// Known input names close to `input`, closest first.
    pub close: Vec<String>,
    /// Every input name known for the node.
    pub known: Vec<String>,
    /// Whether the server's `/object_info` was read for the class.
    pub server_checked: bool,
}

fn no_input_hint(close: &[String], known: &[String], server_checked: bool) -> String {
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("\"{}\"", crate::text::one_line(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut hint = match close {
        [] if known.is_empty() => String::new(),
        [] => format!("; its inputs are {}", quoted(known)),
        [one] => format!("; did you mean {}?", quoted(std::slice::from_ref(one))),
        many => format!("; did you mean one of {}?", quoted(many)),
    };
    if !server_checked {
        hint.push_str(
            " (the server's /object_info could not be read, so only the inputs in the workflow \
             are known)",
        );
    }
    hint
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

/// A `--set NODE.INPUT=VALUE`, parsed. VALUE is read as JSON when it parses (numbers,
/// booleans, quoted strings, lists), else taken as a plain string.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub spec: String,
    pub node: String,
    pub input: String,
    pub value: Value,
}

impl Override {
    pub fn parse(spec: &str) -> Result<Self, WorkflowError> {
        let bad = || WorkflowError::BadOverride(spec.to_string());
        let (target, raw_value) = spec.split_once('=').ok_or_else(bad)?;
        let (node, input) = target.split_once('.').ok_or_else(bad)?;
        if node.is_empty() || input.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            spec: spec.to_string(),
            node: node.to_string(),
            input: input.to_string(),
            value: serde_json::from_str(raw_value)
                .unwrap_or_else(|_| Value::String(raw_value.into())),
        })
    }

    /// The class of the node it sets an input of.
    pub fn class<'a>(&self, workflow: &'a Value) -> Result<&'a str, WorkflowError> {
        workflow
            .get(&self.node)
            .and_then(|n| n.get("class_type"))
            .and_then(Value::as_str)
            .ok_or_else(|| WorkflowError::NoSuchNode {
                spec: self.spec.clone(),
                node: self.node.clone(),
            })
    }

    /// Whether the node already has this input in the workflow.
    pub fn input_in_workflow(&self, workflow: &Value) -> bool {
        workflow
            .get(&self.node)
            .and_then(|n| n.get("inputs"))
            .and_then(Value::as_object)
            .is_some_and(|inputs| inputs.contains_key(&self.input))
    }

    /// Sets the input. One the node does not have in the workflow must be among `accepted`, the
    /// inputs its class takes as the server describes them (`None`: the server was not asked).
    pub fn apply(
        &self,
        workflow: &mut Value,
        accepted: Option<&[String]>,
    ) -> Result<(), WorkflowError> {
        let class = self.class(workflow)?.to_string();
        let in_workflow = self.input_in_workflow(workflow);
        if !in_workflow && !accepted.is_some_and(|names| names.contains(&self.input)) {
            let mut known: Vec<String> = workflow
                .get(&self.node)
                .and_then(|n| n.get("inputs"))
                .and_then(Value::as_object)
                .map(|inputs| inputs.keys().cloned().collect())
                .unwrap_or_default();
            for name in accepted.unwrap_or_default() {
                if !known.contains(name) {
                    known.push(name.clone());
                }
            }
            // The names come from a file and from the server: one safe line each.
            let safe = |text: &str| crate::text::one_line(text).into_owned();
            return Err(WorkflowError::NoSuchInput(Box::new(MissingInput {
                spec: safe(&self.spec),
                node: safe(&self.node),
                close: close_names(&self.input, &known),
                class: safe(&class),
                input: safe(&self.input),
                known,
                server_checked: accepted.is_some(),
            })));
        }
        let Some(node) = workflow.get_mut(&self.node).and_then(Value::as_object_mut) else {
            return Err(WorkflowError::NoSuchNode {
                spec: self.spec.clone(),
                node: self.node.clone(),
            });
        };
        let inputs = node
            .entry("inputs")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(inputs) = inputs {
            inputs.insert(self.input.clone(), self.value.clone());
        }
        Ok(())
    }
}

/// The inputs a node class takes (required and optional), from an `/object_info` answer (for
/// every class, or for that one); `None` when it does not describe the class.
pub fn class_inputs(object_info: &Value, class: &str) -> Option<Vec<String>> {
    let input = object_info.get(class)?.get("input")?;
    let mut names = Vec::new();
    for section in ["required", "optional"] {
        if let Some(fields) = input.get(section).and_then(Value::as_object) {
            names.extend(fields.keys().cloned());
        }
    }
    Some(names)
}

/// The names among `known` a typo of `name` may have meant: the closest ones, if close enough.
fn close_names(name: &str, known: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let distances: Vec<(usize, &String)> = known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|(distance, _)| *distance <= name.chars().count().div_ceil(3))
        .collect();
    let Some(closest) = distances.iter().map(|(d, _)| *d).min() else {
        return Vec::new();
    };
    distances
        .into_iter()
        .filter(|(d, _)| *d == closest)
        .map(|(_, k)| k.clone())
        .collect()
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
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

    fn set(w: &mut Value, spec: &str, accepted: Option<&[String]>) -> Result<(), WorkflowError> {
        Override::parse(spec)?.apply(w, accepted)
    }

    #[test]
    fn overrides_parse_json_or_take_a_string() {
        let mut w = json!({"3": {"class_type": "KSampler", "inputs": {"steps": 20}}});
        let accepted = ["steps", "sampler_name", "denoise"].map(String::from);
        set(&mut w, "3.steps=30", None).unwrap();
        set(&mut w, "3.sampler_name=euler", Some(&accepted)).unwrap();
        set(&mut w, "3.denoise=0.5", Some(&accepted)).unwrap();
        assert_eq!(
            w["3"]["inputs"],
            json!({"steps": 30, "sampler_name": "euler", "denoise": 0.5})
        );
        assert!(matches!(
            set(&mut w, "9.steps=1", None),
            Err(WorkflowError::NoSuchNode { .. })
        ));
        assert!(matches!(
            set(&mut w, "steps=1", None),
            Err(WorkflowError::BadOverride(_))
        ));
    }

    #[test]
    fn an_input_the_node_does_not_have_is_refused_with_the_close_names() {
        let original = json!({"3": {"class_type": "KSampler", "inputs": {"steps": 20, "cfg": 7}}});
        let accepted = ["seed", "steps", "cfg", "sampler_name", "denoise"].map(String::from);
        let mut w = original.clone();
        let err = set(&mut w, "3.step=30", Some(&accepted)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--set 3.step=30: node 3 (KSampler) has no input \"step\"; did you mean \"steps\"?"
        );
        let err = set(&mut w, "3.nosuch=3", Some(&accepted)).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "has no input \"nosuch\"; its inputs are \"cfg\", \"steps\", \"seed\", \
                 \"sampler_name\", \"denoise\""
            ),
            "{err}"
        );
        // Without the server, only the workflow's own inputs are known, and the message says so.
        let err = set(&mut w, "3.Steps=3", None).unwrap_err();
        assert!(err.to_string().contains("did you mean \"steps\"?"), "{err}");
        assert!(
            err.to_string().contains("/object_info could not be read"),
            "{err}"
        );
        assert_eq!(w, original, "nothing was set");
    }

    #[test]
    fn class_inputs_are_the_required_and_optional_ones() {
        let info = json!({"KSampler": {"input": {
            "required": {"seed": ["INT"], "steps": ["INT"]},
            "optional": {"denoise": ["FLOAT"]},
            "hidden": {"prompt": "PROMPT"}
        }}});
        assert_eq!(
            class_inputs(&info, "KSampler").unwrap(),
            ["seed", "steps", "denoise"]
        );
        assert_eq!(class_inputs(&info, "Other"), None);
        assert_eq!(edit_distance("step", "steps"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
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
