//! Prompt validation, step for step as ComfyUI's `validate_prompt` / `validate_inputs` do it, so
//! the 400 bodies (error types, messages, `node_errors`, `dependent_outputs`) and the partial
//! acceptance of graphs with some broken outputs come out the same.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};

use super::pyfmt;
use super::registry::{InputKind, InputSpec, registry};
use comfy_client::api::{NodeError, PromptRejected, ValidationError};
use comfy_client::protocol::NodeId;

/// Python's recursion limit stands behind this: a deeper (or cyclic) graph fails validation
/// instead of overflowing our stack.
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Validation {
    /// Queue it: the outputs to run, and the broken outputs that were dropped.
    Accepted {
        outputs: Vec<NodeId>,
        node_errors: BTreeMap<NodeId, NodeError>,
    },
    Rejected(PromptRejected),
}

/// An exception raised while validating, as Python would report it.
#[derive(Debug, Clone)]
struct PyError {
    kind: &'static str,
    message: String,
    traceback: Vec<String>,
}

fn frame(line: u32, function: &str, code: &str) -> String {
    format!("  File \"ComfyUI/execution.py\", line {line}, in {function}\n    {code}\n")
}

impl PyError {
    fn new(kind: &'static str, message: String, line: u32, code: &str) -> Self {
        Self {
            kind,
            message,
            traceback: vec![frame(line, "validate_inputs", code)],
        }
    }

    /// The traceback as seen from the caller's `try` block, one frame up.
    fn called_from(mut self, line: u32, function: &str, code: &str) -> Self {
        self.traceback.insert(0, frame(line, function, code));
        self
    }
}

fn verror(
    kind: &str,
    message: impl Into<String>,
    details: impl Into<String>,
    extra_info: Value,
) -> ValidationError {
    ValidationError {
        kind: kind.to_string(),
        message: message.into(),
        details: details.into(),
        extra_info,
    }
}

fn rejected(error: ValidationError) -> Validation {
    Validation::Rejected(PromptRejected {
        error,
        node_errors: BTreeMap::new(),
    })
}

/// Validates a workflow (`prompt` object, node ids in the client's order) and converts literal
/// inputs in place (`"5"` for an INT becomes 5), as ComfyUI does. Log lines go to `log`.
pub(crate) fn validate_prompt(
    prompt: &mut Map<String, Value>,
    order: &[NodeId],
    partial: Option<&[String]>,
    log: &mut Vec<String>,
) -> Validation {
    let mut outputs = Vec::new();
    for id in order {
        let class_type = prompt.get(id).and_then(|node| node.get("class_type"));
        let Some(class_type) = class_type else {
            return rejected(verror(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                format!("Node ID '#{id}'"),
                json!({}),
            ));
        };
        let Some(node_type) = class_type.as_str().and_then(|c| registry().get(c)) else {
            return rejected(verror(
                "invalid_prompt",
                format!(
                    "Cannot execute because node {} does not exist.",
                    pyfmt::str(class_type)
                ),
                format!("Node ID '#{id}'"),
                json!({}),
            ));
        };
        if node_type.is_output && partial.is_none_or(|targets| targets.contains(id)) {
            outputs.push(id.clone());
        }
    }
    if outputs.is_empty() {
        return rejected(verror(
            "prompt_no_outputs",
            "Prompt has no outputs",
            "",
            json!({}),
        ));
    }
    // The real server walks a set of output ids; for the recorded workflows it took the later
    // node first ("4" before "3"), and so do we.
    outputs.reverse();

    let mut validator = Validator {
        prompt,
        validated: Vec::new(),
        index: HashMap::new(),
        in_progress: Vec::new(),
    };
    let mut good = Vec::new();
    let mut failures: Vec<Vec<ValidationError>> = Vec::new();
    let mut node_errors: BTreeMap<NodeId, NodeError> = BTreeMap::new();
    for output in outputs {
        let (valid, reasons) = match validator.validate_inputs(&output, 0) {
            Ok(verdict) => verdict,
            Err(ex) => {
                let ex = ex.called_from(
                    1010,
                    "validate_prompt",
                    "m = await validate_inputs(prompt_id, prompt, o, validated)",
                );
                let reasons = vec![verror(
                    "exception_during_validation",
                    "Exception when validating node",
                    ex.message.clone(),
                    json!({"exception_type": ex.kind, "traceback": ex.traceback}),
                )];
                validator.record(&output, false, reasons.clone());
                (false, reasons)
            }
        };
        if valid {
            good.push(output);
            continue;
        }
        log.push(format!("Failed to validate prompt for output {output}:"));
        if !reasons.is_empty() {
            log.push("* (prompt):".into());
            for r in &reasons {
                log.push(format!("  - {}: {}", r.message, r.details));
            }
        }
        failures.push(reasons);
        // Like the real server, every failing node validated so far gets this output added to
        // its dependents, even one found while checking an earlier output.
        for (node_id, (ok, reasons)) in &validator.validated {
            if *ok || reasons.is_empty() {
                continue;
            }
            let entry = node_errors.entry(node_id.clone()).or_insert_with(|| {
                let class_type = validator.prompt[node_id]["class_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                log.push(format!("* {class_type} {node_id}:"));
                for r in reasons {
                    log.push(format!("  - {}: {}", r.message, r.details));
                }
                NodeError {
                    errors: reasons.clone(),
                    dependent_outputs: Vec::new(),
                    class_type,
                }
            });
            entry.dependent_outputs.push(output.clone());
        }
        log.push("Output will be ignored".into());
    }

    if good.is_empty() {
        let details: Vec<String> = failures
            .iter()
            .flatten()
            .map(|r| format!("{}: {}", r.message, r.details))
            .collect();
        return Validation::Rejected(PromptRejected {
            error: verror(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                details.join("\n"),
                json!({}),
            ),
            node_errors,
        });
    }
    Validation::Accepted {
        outputs: good,
        node_errors,
    }
}

/// `repr()` of an error dict, in the key order Python prints it.
pub(crate) fn error_repr(e: &ValidationError) -> String {
    format!(
        "{{'type': {}, 'message': {}, 'details': {}, 'extra_info': {}}}",
        pyfmt::repr_str(&e.kind),
        pyfmt::repr_str(&e.message),
        pyfmt::repr_str(&e.details),
        pyfmt::repr(&e.extra_info)
    )
}

type Verdict = (bool, Vec<ValidationError>);

struct Validator<'a> {
    prompt: &'a mut Map<String, Value>,
    /// Results in the order they were reached (Python's `validated` dict).
    validated: Vec<(NodeId, Verdict)>,
    index: HashMap<NodeId, usize>,
    in_progress: Vec<NodeId>,
}

impl Validator<'_> {
    fn record(&mut self, id: &str, ok: bool, reasons: Vec<ValidationError>) {
        match self.index.get(id) {
            Some(&i) => self.validated[i].1 = (ok, reasons),
            None => {
                self.index.insert(id.to_string(), self.validated.len());
                self.validated.push((id.to_string(), (ok, reasons)));
            }
        }
    }

    fn validate_inputs(&mut self, id: &str, depth: usize) -> Result<Verdict, PyError> {
        if let Some(&i) = self.index.get(id) {
            return Ok(self.validated[i].1.clone());
        }
        if depth > MAX_DEPTH || self.in_progress.iter().any(|p| p == id) {
            return Err(PyError::new(
                "RecursionError",
                "maximum recursion depth exceeded".into(),
                834,
                "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
            ));
        }
        self.in_progress.push(id.to_string());
        let result = self.check_node(id, depth);
        self.in_progress.pop();
        let verdict = result?;
        self.record(id, verdict.0, verdict.1.clone());
        Ok(verdict)
    }

    fn check_node(&mut self, id: &str, depth: usize) -> Result<Verdict, PyError> {
        let node = self.prompt.get(id).cloned().unwrap_or(Value::Null);
        let Some(inputs) = node.get("inputs") else {
            return Err(PyError::new(
                "KeyError",
                "'inputs'".into(),
                762,
                "inputs = prompt[unique_id]['inputs']",
            ));
        };
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        let class_type = node["class_type"].as_str().unwrap_or_default();
        let Some(node_type) = registry().get(class_type) else {
            return Err(PyError::new(
                "KeyError",
                pyfmt::repr_str(class_type),
                765,
                "obj_class = nodes.NODE_CLASS_MAPPINGS[class_type]",
            ));
        };

        let mut errors = Vec::new();
        let mut valid = true;
        let mut converted: Vec<(String, Value)> = Vec::new();
        for spec in &node_type.inputs {
            let Some(value) = inputs.get(&spec.name) else {
                if spec.required {
                    errors.push(verror(
                        "required_input_missing",
                        "Required input is missing",
                        spec.name.clone(),
                        json!({"input_name": spec.name}),
                    ));
                }
                continue;
            };
            let checked = match value {
                Value::Array(link) => self.check_link(spec, link, value, depth)?,
                _ => check_widget_value(spec, value, &mut converted),
            };
            match checked {
                InputCheck::Fine => {}
                InputCheck::Wrong(error) => errors.push(error),
                InputCheck::InvalidUpstream => valid = false,
            }
        }

        if !converted.is_empty()
            && let Some(Value::Object(inputs)) = self
                .prompt
                .get_mut(id)
                .and_then(|node| node.get_mut("inputs"))
        {
            inputs.extend(converted);
        }
        Ok((errors.is_empty() && valid, errors))
    }

    /// An input linked to another node's output: the link's shape, the types on both ends, and
    /// the node it comes from (validated in turn).
    fn check_link(
        &mut self,
        spec: &InputSpec,
        link: &[Value],
        value: &Value,
        depth: usize,
    ) -> Result<InputCheck, PyError> {
        if link.len() != 2 {
            return Ok(InputCheck::Wrong(verror(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                spec.name.clone(),
                json!({"input_name": spec.name, "input_config": spec.config, "received_value": value}),
            )));
        }
        let (from_id, received_type) = self.resolve_link(link)?;
        if !types_match(&received_type, spec.type_name()) {
            return Ok(InputCheck::Wrong(verror(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                format!(
                    "{}, received_type({received_type}) mismatch input_type({})",
                    spec.name,
                    spec.type_name()
                ),
                json!({
                    "input_name": spec.name,
                    "input_config": spec.config,
                    "received_type": received_type,
                    "linked_node": value,
                }),
            )));
        }
        Ok(match self.validate_inputs(&from_id, depth + 1) {
            Ok((true, _)) => InputCheck::Fine,
            Ok((false, _)) => InputCheck::InvalidUpstream,
            Err(ex) => {
                let ex = ex.called_from(
                    834,
                    "validate_inputs",
                    "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
                );
                let reasons = vec![verror(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    ex.message.clone(),
                    json!({
                        "input_name": spec.name,
                        "input_config": spec.config,
                        "exception_message": ex.message,
                        "exception_type": ex.kind,
                        "traceback": ex.traceback,
                        "linked_node": value,
                    }),
                )];
                self.record(&from_id, false, reasons);
                InputCheck::InvalidUpstream
            }
        })
    }

    /// `prompt[o_id]['class_type']` and `RETURN_TYPES[slot]`; failures are Python exceptions.
    fn resolve_link(&self, link: &[Value]) -> Result<(NodeId, String), PyError> {
        const LINE: u32 = 788;
        const CODE: &str = "o_class_type = prompt[o_id]['class_type']";
        let from_id = match &link[0] {
            Value::String(s) if self.prompt.contains_key(s) => s.clone(),
            Value::Array(_) => {
                return Err(PyError::new(
                    "TypeError",
                    "unhashable type: 'list'".into(),
                    LINE,
                    CODE,
                ));
            }
            Value::Object(_) => {
                return Err(PyError::new(
                    "TypeError",
                    "unhashable type: 'dict'".into(),
                    LINE,
                    CODE,
                ));
            }
            other => return Err(PyError::new("KeyError", pyfmt::repr(other), LINE, CODE)),
        };
        let class_type = self.prompt[&from_id]["class_type"]
            .as_str()
            .unwrap_or_default();
        let outputs = registry()
            .get(class_type)
            .map(|t| t.output_types.clone())
            .unwrap_or_default();
        const SLOT_LINE: u32 = 790;
        const SLOT_CODE: &str = "received_type = r[val[1]]";
        let index = match &link[1] {
            Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX),
            Value::Bool(b) => i64::from(*b),
            other => {
                let type_name = match other {
                    Value::Number(_) => "float",
                    Value::String(_) => "str",
                    Value::Null => "NoneType",
                    Value::Array(_) => "list",
                    _ => "dict",
                };
                return Err(PyError::new(
                    "TypeError",
                    format!("tuple indices must be integers or slices, not {type_name}"),
                    SLOT_LINE,
                    SLOT_CODE,
                ));
            }
        };
        // Python indexes from the end for negative numbers.
        let len = outputs.len() as i64;
        let index = if index < 0 { index + len } else { index };
        match usize::try_from(index).ok().and_then(|i| outputs.get(i)) {
            Some(t) => Ok((from_id, t.clone())),
            None => Err(PyError::new(
                "IndexError",
                "tuple index out of range".into(),
                SLOT_LINE,
                SLOT_CODE,
            )),
        }
    }
}

/// ComfyUI's `validate_node_input`: equal names, a `*` on either side, or a shared member of
/// comma-separated unions.
fn types_match(received: &str, expected: &str) -> bool {
    if received == expected {
        return true;
    }
    let split = |s: &str| {
        s.split(',')
            .map(|t| t.trim().to_string())
            .collect::<Vec<_>>()
    };
    let (r, e) = (split(received), split(expected));
    r.iter().any(|t| t == "*") || e.iter().any(|t| t == "*") || r.iter().any(|t| e.contains(t))
}

/// What one input of a node came to.
enum InputCheck {
    Fine,
    /// This input is wrong: the error is the node's.
    Wrong(ValidationError),
    /// The node it links to did not validate: the error is that node's.
    InvalidUpstream,
}

/// A widget value (not a link): converted to the input's type (`{"__value__": v}` unwrapped),
/// then checked against its range or choices. Conversions are noted in `converted`.
fn check_widget_value(
    spec: &InputSpec,
    value: &Value,
    converted: &mut Vec<(String, Value)>,
) -> InputCheck {
    let mut value = value.clone();
    if let Some(inner) = value.get("__value__").cloned() {
        value = inner;
        converted.push((spec.name.clone(), value.clone()));
    }
    match convert(&spec.kind, &value) {
        Ok(Some(v)) => {
            value = v;
            converted.push((spec.name.clone(), value.clone()));
        }
        Ok(None) => {}
        Err(reason) => {
            return InputCheck::Wrong(verror(
                "invalid_input_type",
                format!(
                    "Failed to convert an input value to a {} value",
                    spec.type_name()
                ),
                format!("{}, {}, {reason}", spec.name, pyfmt::str(&value)),
                json!({
                    "input_name": spec.name,
                    "input_config": spec.config,
                    "received_value": value,
                    "exception_message": reason,
                }),
            ));
        }
    }
    if let Some(error) = range_error(spec, &value) {
        return InputCheck::Wrong(error);
    }
    if let InputKind::Combo(choices) = &spec.kind
        && !choices.contains(&value)
    {
        let (list_info, config) = if choices.len() > 20 {
            (format!("(list of length {})", choices.len()), Value::Null)
        } else {
            (
                pyfmt::repr(&Value::Array(choices.clone())),
                spec.config.clone(),
            )
        };
        return InputCheck::Wrong(verror(
            "value_not_in_list",
            "Value not in list",
            format!("{}: '{}' not in {list_info}", spec.name, pyfmt::str(&value)),
            json!({"input_name": spec.name, "input_config": config, "received_value": value}),
        ));
    }
    InputCheck::Fine
}

/// Python's `int()` / `float()` / `str()` / `bool()` on a literal input. `Ok(None)` means the
/// value is kept as it is; `Err` carries the exception message.
fn convert(kind: &InputKind, value: &Value) -> Result<Option<Value>, String> {
    let type_name = |v: &Value| match v {
        Value::Null => "NoneType",
        Value::Object(_) => "dict",
        Value::Array(_) => "list",
        _ => "str",
    };
    Ok(Some(match kind {
        InputKind::Int => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => return Ok(None),
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0).trunc();
                if f.abs() < 9.2e18 {
                    Value::from(f as i64)
                } else {
                    Value::from(f)
                }
            }
            Value::Bool(b) => Value::from(i64::from(*b)),
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Value::from(i),
                Err(_) => match s.trim().parse::<u64>() {
                    Ok(u) => Value::from(u),
                    Err(_) => {
                        return Err(format!(
                            "invalid literal for int() with base 10: {}",
                            pyfmt::repr_str(s)
                        ));
                    }
                },
            },
            other => {
                return Err(format!(
                    "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                    type_name(other)
                ));
            }
        },
        InputKind::Float => match value {
            Value::Number(n) => Value::from(n.as_f64().unwrap_or(0.0)),
            Value::Bool(b) => Value::from(if *b { 1.0 } else { 0.0 }),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) => Value::from(f),
                Err(_) => {
                    return Err(format!(
                        "could not convert string to float: {}",
                        pyfmt::repr_str(s)
                    ));
                }
            },
            other => {
                return Err(format!(
                    "float() argument must be a string or a real number, not '{}'",
                    type_name(other)
                ));
            }
        },
        InputKind::String => match value {
            Value::String(_) => return Ok(None),
            other => Value::String(pyfmt::str(other)),
        },
        InputKind::Boolean => match value {
            Value::Bool(_) => return Ok(None),
            other => Value::Bool(pyfmt::truthy(other)),
        },
        InputKind::Combo(_) | InputKind::Link(_) => return Ok(None),
    }))
}

fn range_error(spec: &InputSpec, value: &Value) -> Option<ValidationError> {
    let v = value.as_f64()?;
    let extra =
        || json!({"input_name": spec.name, "input_config": spec.config, "received_value": value});
    if let Some(min) = spec.options.get("min")
        && min.as_f64().is_some_and(|min| v < min)
    {
        return Some(verror(
            "value_smaller_than_min",
            format!(
                "Value {} smaller than min of {}",
                pyfmt::str(value),
                pyfmt::str(min)
            ),
            spec.name.clone(),
            extra(),
        ));
    }
    if let Some(max) = spec.options.get("max")
        && max.as_f64().is_some_and(|max| v > max)
    {
        return Some(verror(
            "value_bigger_than_max",
            format!(
                "Value {} bigger than max of {}",
                pyfmt::str(value),
                pyfmt::str(max)
            ),
            spec.name.clone(),
            extra(),
        ));
    }
    None
}

/// Random JSON and random workflows for property tests.
#[cfg(test)]
pub(crate) mod arbitrary {
    use serde_json::{Map, Value, json};

    /// A tiny xorshift generator of choices.
    struct Choices(u64);

    impl Choices {
        fn pick(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }

        /// A link to a node before `index` (itself for the first), mostly to slot 0.
        fn link(&mut self, index: usize) -> Value {
            let slot = if self.pick(6) == 0 { self.pick(3) } else { 0 };
            json!([self.pick(index.max(1) as u64).to_string(), slot])
        }
    }

    /// Mostly valid workflows of every node type, with small sizes and short delays: links
    /// go to any earlier node and slot, so some mismatch, and some values are at the edges
    /// (a save prefix leaving the folder, an empty latent, a node that raises).
    pub(crate) fn any_runnable_workflow() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        proptest::collection::vec((0..14usize, any::<u64>()), 1..8).prop_map(|nodes| {
            let mut prompt = Map::new();
            for (index, (kind, seed)) in nodes.iter().enumerate() {
                let mut c = Choices(*seed | 1);
                let node = match kind {
                    0 => json!({"class_type": "EmptyImage", "inputs": {"width": 1 + c.pick(48), "height": 1 + c.pick(48), "batch_size": 1 + c.pick(2), "color": c.pick(0xFF_FFFF)}}),
                    1 => json!({"class_type": "LabSlowSteps", "inputs": {"steps": 1 + c.pick(4), "delay": c.pick(5) as f64 / 100.0, "seed": c.pick(1000), "width": 16 + c.pick(48), "height": 16 + c.pick(48), "preview_size": 8 + c.pick(56), "send_text": c.pick(2) == 1}}),
                    2 => json!({"class_type": "LabLongRun", "inputs": {"steps": 1 + c.pick(40), "delay": c.pick(5) as f64 / 100.0, "seed": c.pick(9)}}),
                    3 => json!({"class_type": "ImageScale", "inputs": {"image": c.link(index), "upscale_method": (["nearest-exact", "bilinear", "area", "bicubic", "lanczos"][c.pick(5) as usize]), "width": c.pick(64), "height": c.pick(64), "crop": (["disabled", "center"][c.pick(2) as usize])}}),
                    4 => json!({"class_type": "ImageBlend", "inputs": {"image1": c.link(index), "image2": c.link(index), "blend_factor": c.pick(101) as f64 / 100.0, "blend_mode": (["normal", "multiply", "screen", "overlay", "soft_light", "difference"][c.pick(6) as usize])}}),
                    5 => json!({"class_type": "SaveImage", "inputs": {"images": c.link(index), "filename_prefix": (["a", "a/b", "../x", "", "x/../y", "/abs"][c.pick(6) as usize])}}),
                    6 => json!({"class_type": "PreviewImage", "inputs": {"images": c.link(index)}}),
                    7 => json!({"class_type": "SaveImageWebsocket", "inputs": {"images": c.link(index)}}),
                    8 => json!({"class_type": "LabRaiseError", "inputs": {"message": "boom", "image": c.link(index)}}),
                    9 => json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": (["dreamshaper_8.safetensors", "sd_xl_base_1.0.safetensors"][c.pick(2) as usize])}}),
                    10 => json!({"class_type": "CLIPTextEncode", "inputs": {"text": "a forest", "clip": c.link(index)}}),
                    11 => json!({"class_type": "EmptyLatentImage", "inputs": {"width": 16 + 8 * c.pick(8), "height": 16 + 8 * c.pick(8), "batch_size": 1 + c.pick(2)}}),
                    12 => json!({"class_type": "KSampler", "inputs": {"model": c.link(index), "seed": c.pick(100), "steps": 1 + c.pick(3), "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "positive": c.link(index), "negative": c.link(index), "latent_image": c.link(index), "denoise": 1.0}}),
                    _ => json!({"class_type": "VAEDecode", "inputs": {"samples": c.link(index), "vae": c.link(index)}}),
                };
                prompt.insert(index.to_string(), node);
            }
            // Something to run: a preview of the last node.
            let last = (nodes.len() - 1).to_string();
            prompt.insert(
                "out".into(),
                json!({"class_type": "PreviewImage", "inputs": {"images": [last, 0]}}),
            );
            Value::Object(prompt)
        })
    }

    pub(crate) fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9 .-]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A workflow of known and unknown node types whose inputs are missing, plausible,
    /// arbitrary JSON, or links to any node and slot.
    pub(crate) fn any_workflow() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let classes = [
            "LabSlowSteps",
            "EmptyImage",
            "ImageScale",
            "ImageBlend",
            "SaveImage",
            "PreviewImage",
            "KSampler",
            "VAEDecode",
            "EmptyLatentImage",
            "CLIPTextEncode",
            "LabRaiseError",
            "Nope",
        ];
        let input = prop_oneof![
            Just(None),
            any_json().prop_map(Some),
            (0..8u8, -2..4i64).prop_map(|(n, slot)| Some(json!([n.to_string(), slot]))),
            (1..64i64).prop_map(|n| Some(json!(n))),
        ];
        let names = [
            "images",
            "image",
            "image1",
            "image2",
            "width",
            "height",
            "steps",
            "samples",
            "upscale_method",
            "blend_mode",
            "seed",
            "delay",
            "batch_size",
            "color",
            "model",
        ];
        let node = (
            0..classes.len(),
            proptest::collection::vec(input, names.len()),
        )
            .prop_map(move |(class, inputs)| {
                let inputs: Map<String, Value> = names
                    .iter()
                    .zip(inputs)
                    .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
                    .collect();
                json!({"class_type": classes[class], "inputs": inputs})
            });
        proptest::collection::vec(node, 1..7).prop_map(|nodes| {
            Value::Object(
                nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| (i.to_string(), n))
                    .collect(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::arbitrary;

    fn run(prompt: Value) -> (Validation, Map<String, Value>, Vec<String>) {
        let Value::Object(mut map) = prompt else {
            panic!("not an object")
        };
        let order: Vec<String> = map.keys().cloned().collect();
        let mut log = Vec::new();
        let v = validate_prompt(&mut map, &order, None, &mut log);
        (v, map, log)
    }

    fn error_types(errors: &NodeError) -> Vec<&str> {
        errors.errors.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn min_and_missing_are_reported_on_the_node_with_its_output() {
        let (v, _, log) = run(json!({
            "1": {"class_type": "LabSlowSteps", "inputs": {"delay": 0.1, "seed": 1, "width": 4, "height": 64}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        }));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(r.error.kind, "prompt_outputs_failed_validation");
        assert_eq!(r.error.details, "");
        let node = &r.node_errors["1"];
        assert_eq!(
            error_types(node),
            ["required_input_missing", "value_smaller_than_min"]
        );
        assert_eq!(node.errors[1].message, "Value 4 smaller than min of 16");
        assert_eq!(node.dependent_outputs, ["2"]);
        assert_eq!(node.class_type, "LabSlowSteps");
        assert!(log.contains(&"Failed to validate prompt for output 2:".to_string()));
    }

    #[test]
    fn a_link_to_a_missing_node_is_an_exception() {
        let (v, _, _) =
            run(json!({"2": {"class_type": "PreviewImage", "inputs": {"images": ["99", 0]}}}));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(r.error.details, "Exception when validating node: '99'");
        let e = &r.node_errors["2"].errors[0];
        assert_eq!(e.kind, "exception_during_validation");
        assert_eq!(e.extra_info["exception_type"], "KeyError");
        assert_eq!(e.extra_info["traceback"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_deeper_broken_link_is_an_inner_exception_on_the_linked_node() {
        let (v, _, _) = run(json!({
            "1": {"class_type": "ImageScale", "inputs": {"image": ["99", 0], "upscale_method": "area", "width": 8, "height": 8, "crop": "disabled"}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        }));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        let e = &r.node_errors["1"].errors[0];
        assert_eq!(e.kind, "exception_during_inner_validation");
        assert_eq!(e.extra_info["input_name"], "images");
    }

    #[test]
    fn partially_valid_graphs_keep_the_good_outputs() {
        let (v, _, _) = run(json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 255}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
            "3": {"class_type": "ImageScale", "inputs": {"upscale_method": "no-such-method", "width": 32, "height": 32, "crop": "disabled", "image": ["1", 0]}},
            "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": "lab/partial", "images": ["3", 0]}}
        }));
        let Validation::Accepted {
            outputs,
            node_errors,
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(outputs, ["2"]);
        assert_eq!(error_types(&node_errors["3"]), ["value_not_in_list"]);
        assert_eq!(
            node_errors["3"].errors[0].details,
            "upscale_method: 'no-such-method' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']"
        );
        assert_eq!(node_errors["3"].dependent_outputs, ["4"]);
    }

    #[test]
    fn literals_are_converted_in_place_and_bad_ones_rejected() {
        let (v, prompt, _) = run(json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": "32", "height": 32.9, "batch_size": true, "color": 0}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        }));
        assert!(matches!(v, Validation::Accepted { .. }), "{v:?}");
        assert_eq!(prompt["1"]["inputs"]["width"], json!(32));
        assert_eq!(prompt["1"]["inputs"]["height"], json!(32));
        assert_eq!(prompt["1"]["inputs"]["batch_size"], json!(1));

        let (v, _, _) = run(json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": "wide", "height": 99999, "batch_size": 1, "color": 0}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        }));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        let node = &r.node_errors["1"];
        assert_eq!(
            error_types(node),
            ["invalid_input_type", "value_bigger_than_max"]
        );
        assert_eq!(
            node.errors[0].details,
            "width, wide, invalid literal for int() with base 10: 'wide'"
        );
    }

    #[test]
    fn unknown_classes_cycles_and_type_mismatches_never_panic() {
        let (v, _, _) = run(json!({"1": {"class_type": "NoSuchNodeType", "inputs": {}}}));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(r.error.kind, "invalid_prompt");
        assert_eq!(
            r.error.message,
            "Cannot execute because node NoSuchNodeType does not exist."
        );

        let (v, _, _) = run(json!({
            "1": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "area", "width": 8, "height": 8, "crop": "disabled"}},
            "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "area", "width": 8, "height": 8, "crop": "disabled"}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        }));
        assert!(matches!(v, Validation::Rejected(_)), "{v:?}");

        let (v, _, _) = run(json!({
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
        }));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(error_types(&r.node_errors["2"]), ["return_type_mismatch"]);

        let (v, _, _) = run(json!({"1": {"class_type": "PreviewImage"}}));
        let Validation::Rejected(r) = v else {
            panic!("{v:?}")
        };
        assert_eq!(r.node_errors["1"].errors[0].details, "'inputs'");

        let (v, _, _) = run(json!({"1": "not a node"}));
        assert!(matches!(v, Validation::Rejected(_)));
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(prompt in arbitrary::any_workflow()) {
            let (v, _, _) = run(prompt.clone());
            if let Validation::Accepted { outputs, .. } = v {
                for id in outputs {
                    let class = prompt[&id]["class_type"].as_str().unwrap_or_default();
                    proptest::prop_assert!(registry().get(class).is_some_and(|t| t.is_output));
                }
            }
        }
    }

    #[test]
    fn a_deep_chain_does_not_overflow_the_stack() {
        let mut prompt = Map::new();
        prompt.insert(
            "0".into(),
            json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
        );
        for i in 1..5000 {
            prompt.insert(
                i.to_string(),
                json!({"class_type": "ImageScale", "inputs": {"image": [(i - 1).to_string(), 0], "upscale_method": "area", "width": 8, "height": 8, "crop": "disabled"}}),
            );
        }
        prompt.insert(
            "out".into(),
            json!({"class_type": "PreviewImage", "inputs": {"images": ["4999", 0]}}),
        );
        let (v, _, _) = run(Value::Object(prompt));
        assert!(matches!(v, Validation::Rejected(_)));
    }
}
