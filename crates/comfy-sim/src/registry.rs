//! The node types the simulator knows: their `object_info` entries (an embedded JSON asset, the
//! Lab and built-in ones as the real server lists them) and the input specs validation reads
//! from those same entries.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// Every node type that runs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NodeKind {
    LabSlowSteps,
    LabLongRun,
    LabRaiseError,
    LabSendText,
    EmptyImage,
    ImageScale,
    ImageBlend,
    SaveImage,
    PreviewImage,
    SaveImageWebsocket,
    CheckpointLoaderSimple,
    ClipTextEncode,
    EmptyLatentImage,
    KSampler,
    VaeDecode,
}

impl NodeKind {
    fn from_class(class_type: &str) -> Option<Self> {
        Some(match class_type {
            "LabSlowSteps" => Self::LabSlowSteps,
            "LabLongRun" => Self::LabLongRun,
            "LabRaiseError" => Self::LabRaiseError,
            "LabSendText" => Self::LabSendText,
            "EmptyImage" => Self::EmptyImage,
            "ImageScale" => Self::ImageScale,
            "ImageBlend" => Self::ImageBlend,
            "SaveImage" => Self::SaveImage,
            "PreviewImage" => Self::PreviewImage,
            "SaveImageWebsocket" => Self::SaveImageWebsocket,
            "CheckpointLoaderSimple" => Self::CheckpointLoaderSimple,
            "CLIPTextEncode" => Self::ClipTextEncode,
            "EmptyLatentImage" => Self::EmptyLatentImage,
            "KSampler" => Self::KSampler,
            "VAEDecode" => Self::VaeDecode,
            _ => return None,
        })
    }
}

/// What an input accepts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InputKind {
    Int,
    Float,
    String,
    Boolean,
    /// A fixed list of choices (the list form and the `COMBO` form alike).
    Combo(Vec<Value>),
    /// A link from another node's output of this type (`IMAGE`, `LATENT`, ...).
    Link(String),
}

#[derive(Debug, Clone)]
pub(crate) struct InputSpec {
    pub name: String,
    pub required: bool,
    pub kind: InputKind,
    /// `(input_type, extra_info)` as validation errors quote it in `input_config`.
    pub config: Value,
    /// The options dict (`min`, `max`, `default`, ...), empty when the spec has none.
    pub options: Map<String, Value>,
}

impl InputSpec {
    /// The type name Python compares links against (`INT`, `IMAGE`, `COMBO`, ...).
    pub(crate) fn type_name(&self) -> &str {
        match &self.kind {
            InputKind::Int => "INT",
            InputKind::Float => "FLOAT",
            InputKind::String => "STRING",
            InputKind::Boolean => "BOOLEAN",
            InputKind::Combo(_) => "COMBO",
            InputKind::Link(t) => t,
        }
    }

    pub(crate) fn default(&self) -> Option<&Value> {
        self.options.get("default")
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NodeType {
    pub kind: NodeKind,
    pub info: Value,
    /// Required inputs first, then optional ones, each in `input_order`.
    pub inputs: Vec<InputSpec>,
    pub output_types: Vec<String>,
    pub is_output: bool,
}

impl NodeType {
    pub(crate) fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }
}

#[derive(Debug)]
pub(crate) struct Registry {
    types: BTreeMap<String, NodeType>,
}

impl Registry {
    pub(crate) fn get(&self, class_type: &str) -> Option<&NodeType> {
        self.types.get(class_type)
    }

    /// `GET /object_info`.
    pub(crate) fn object_info(&self) -> Value {
        Value::Object(
            self.types
                .iter()
                .map(|(name, t)| (name.clone(), t.info.clone()))
                .collect(),
        )
    }
}

static NODE_TYPES_JSON: &str = include_str!("node_types.json");

/// The registry, built once from the embedded asset.
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| build(NODE_TYPES_JSON))
}

fn build(json: &str) -> Registry {
    // The asset is part of the program; a unit test checks every entry loads.
    let all: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
    let types = all
        .into_iter()
        .filter_map(|(name, info)| {
            let kind = NodeKind::from_class(&name)?;
            Some((name, node_type(kind, info)))
        })
        .collect();
    Registry { types }
}

fn node_type(kind: NodeKind, info: Value) -> NodeType {
    let mut inputs = Vec::new();
    for (category, required) in [("required", true), ("optional", false)] {
        let specs = info["input"][category].as_object();
        let order: Vec<String> = match info["input_order"][category].as_array() {
            Some(names) => names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            None => specs
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        };
        for name in order {
            if let Some(spec) = specs.and_then(|m| m.get(&name)) {
                inputs.push(input_spec(name, required, spec));
            }
        }
    }
    let output_types = info["output"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let is_output = info["output_node"].as_bool().unwrap_or(false);
    NodeType {
        kind,
        info,
        inputs,
        output_types,
        is_output,
    }
}

fn input_spec(name: String, required: bool, spec: &Value) -> InputSpec {
    let type_value = spec.get(0).cloned().unwrap_or(Value::Null);
    let options = spec
        .get(1)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let kind = match &type_value {
        Value::Array(choices) => InputKind::Combo(choices.clone()),
        Value::String(t) => match t.as_str() {
            "INT" => InputKind::Int,
            "FLOAT" => InputKind::Float,
            "STRING" => InputKind::String,
            "BOOLEAN" => InputKind::Boolean,
            "COMBO" => InputKind::Combo(
                options
                    .get("options")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            other => InputKind::Link(other.to_string()),
        },
        _ => InputKind::Link("*".into()),
    };
    let config = Value::Array(vec![type_value, Value::Object(options.clone())]);
    InputSpec {
        name,
        required,
        kind,
        config,
        options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_of_the_asset_loads() {
        let all: Map<String, Value> = serde_json::from_str(NODE_TYPES_JSON).unwrap();
        assert_eq!(registry().types.len(), all.len());
        for name in all.keys() {
            assert!(NodeKind::from_class(name).is_some(), "{name}");
        }
    }

    #[test]
    fn specs_read_like_comfyui() {
        let slow = registry().get("LabSlowSteps").unwrap();
        let names: Vec<&str> = slow.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "steps",
                "delay",
                "seed",
                "width",
                "height",
                "preview_size",
                "send_text"
            ]
        );
        assert!(slow.input("width").unwrap().required);
        assert!(!slow.input("send_text").unwrap().required);
        assert!(!slow.is_output);
        let scale = registry().get("ImageScale").unwrap();
        let method = scale.input("upscale_method").unwrap();
        assert!(matches!(&method.kind, InputKind::Combo(c) if c.len() == 5));
        assert_eq!(method.config[1], serde_json::json!({}));
        let blend = registry().get("ImageBlend").unwrap();
        assert!(
            matches!(&blend.input("blend_mode").unwrap().kind, InputKind::Combo(c) if c.len() == 6)
        );
        assert!(registry().get("SaveImage").unwrap().is_output);
        assert_eq!(
            registry()
                .get("CheckpointLoaderSimple")
                .unwrap()
                .output_types,
            ["MODEL", "CLIP", "VAE"]
        );
    }
}
