//! What each node type does when it runs: its outputs, its UI output, the progress, previews and
//! text it reports, how long it takes, and how it fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use image::RgbImage;
use serde_json::{Map, Value, json};

use super::exec::{Preview, Reporter};
use super::hub::Target;
use super::images::{self, Batch, Scene};
use super::registry::{NodeKind, NodeType};
use super::state::FileKey;
use comfy_client::binary::{BinaryFrame, ImageFormat};
use comfy_client::protocol::{ImageRef, NodeOutput};

/// A value flowing along a link.
#[derive(Debug, Clone)]
pub(crate) enum Data {
    Image(Arc<Batch>),
    Latent(Arc<Latent>),
    Model(Arc<Checkpoint>),
    Clip(Arc<Checkpoint>),
    Vae(Arc<Checkpoint>),
    Conditioning(Arc<Conditioning>),
}

impl Data {
    /// `str()` of the value, as `current_inputs` of an `execution_error` shows it.
    fn python_text(&self) -> String {
        let at = |p: *const ()| format!("0x7f{:010x}", (p as usize as u64) & 0xff_ffff_ffff);
        match self {
            Self::Image(batch) => images::tensor_repr(batch),
            Self::Latent(l) => format!(
                "{{'samples': tensor(shape=[{}, 4, {}, {}])}}",
                l.batch,
                l.height / 8,
                l.width / 8
            ),
            Self::Model(m) => format!(
                "<comfy.model_patcher.ModelPatcher object at {}>",
                at(Arc::as_ptr(m).cast())
            ),
            Self::Clip(c) => format!("<comfy.sd.CLIP object at {}>", at(Arc::as_ptr(c).cast())),
            Self::Vae(v) => format!("<comfy.sd.VAE object at {}>", at(Arc::as_ptr(v).cast())),
            Self::Conditioning(c) => format!(
                "[[tensor(shape=[1, 77, 768]), {{'pooled_output': None, 'text': {}}}]]",
                super::pyfmt::repr_str(&c.text)
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Sd15,
    Sdxl,
}

impl Family {
    fn native_side(self) -> u32 {
        match self {
            Self::Sd15 => 512,
            Self::Sdxl => 1024,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Checkpoint {
    pub name: String,
    pub family: Family,
}

impl Checkpoint {
    fn unet_bytes(&self) -> u64 {
        match self.family {
            Family::Sd15 => 1_639 << 20,
            Family::Sdxl => 4_897 << 20,
        }
    }

    fn clip(&self) -> (&'static str, u64) {
        match self.family {
            Family::Sd15 => ("SD1ClipModel", 235 << 20),
            Family::Sdxl => ("SDXLClipModel", 1_560 << 20),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Conditioning {
    pub text: String,
}

/// A latent batch: its size, and once sampled, what it depicts.
#[derive(Debug)]
pub(crate) struct Latent {
    pub width: u32,
    pub height: u32,
    pub batch: u32,
    /// Prompt text and seed of the sampled content; `None` for an empty latent.
    pub content: Option<(String, u64)>,
}

/// A node's results: one value per output slot, and its UI output (`None` when it has none).
pub(crate) struct NodeResult {
    pub outputs: Vec<Data>,
    pub ui: Option<NodeOutput>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exception {
    /// Python's `full_type_name` of the exception (`RuntimeError`, `torch.OutOfMemoryError`).
    pub kind: String,
    pub message: String,
    pub traceback: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeFailure {
    Interrupted,
    Exception(Exception),
}

/// The frames ComfyUI's executor adds above a node's own code.
fn executor_frames() -> Vec<String> {
    vec![
        "  File \"ComfyUI/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n".into(),
        "  File \"ComfyUI/execution.py\", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n".into(),
        "  File \"ComfyUI/execution.py\", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n".into(),
        "  File \"ComfyUI/execution.py\", line 277, in process_inputs\n    result = f(**inputs)\n             ^^^^^^^^^^^\n".into(),
    ]
}

fn exception(
    kind: &str,
    message: impl Into<String>,
    frames: &[(&str, u32, &str, &str)],
) -> NodeFailure {
    let mut traceback = executor_frames();
    for (file, line, function, code) in frames {
        traceback.push(format!(
            "  File \"ComfyUI/{file}\", line {line}, in {function}\n    {code}\n"
        ));
    }
    NodeFailure::Exception(Exception {
        kind: kind.into(),
        message: message.into(),
        traceback,
    })
}

/// CUDA running out of memory, as torch words it.
fn out_of_memory(
    wanted: u64,
    total: u64,
    free: u64,
    frames: &[(&str, u32, &str, &str)],
) -> NodeFailure {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    exception(
        "torch.OutOfMemoryError",
        format!(
            "CUDA out of memory. Tried to allocate {:.2} GiB. GPU 0 has a total capacity of {:.2} GiB of which {:.2} GiB is free. Of the allocated memory {:.2} GiB is allocated by PyTorch, and {:.2} GiB is reserved by PyTorch but unallocated.",
            gib(wanted),
            gib(total),
            gib(free),
            gib(total.saturating_sub(free)),
            0.31
        ),
        frames,
    )
}

/// Images bigger than this (pixels over the batch) fail like an allocation would, instead of
/// really being allocated.
const MAX_PIXELS: u64 = 48_000_000;

fn check_pixels(width: u32, height: u32, batch: u32) -> Result<(), NodeFailure> {
    let wanted = u64::from(width) * u64::from(height) * u64::from(batch.max(1));
    if wanted > MAX_PIXELS {
        return Err(exception(
            "RuntimeError",
            format!(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate {} bytes.",
                wanted * 12
            ),
            &[],
        ));
    }
    Ok(())
}

/// Runs CPU-heavy image work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeFailure> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        NodeFailure::Exception(Exception {
            kind: "RuntimeError".into(),
            message: e.to_string(),
            traceback: executor_frames(),
        })
    })
}

/// One input as the node receives it.
#[derive(Debug, Clone)]
pub(crate) enum InputValue {
    Literal(Value),
    Data(Data),
}

/// A node's inputs, literals already converted by validation, links resolved.
pub(crate) struct Inputs {
    pub node_type: &'static NodeType,
    pub values: BTreeMap<String, InputValue>,
}

fn type_error(name: &str, expected: &str, got: &InputValue) -> NodeFailure {
    let got = match got {
        InputValue::Literal(Value::String(_)) => "str",
        InputValue::Literal(Value::Number(n)) if n.is_f64() => "float",
        InputValue::Literal(Value::Number(_)) => "int",
        InputValue::Literal(Value::Bool(_)) => "bool",
        InputValue::Literal(Value::Null) => "NoneType",
        InputValue::Literal(Value::Array(_)) => "list",
        InputValue::Literal(Value::Object(_)) => "dict",
        InputValue::Data(_) => "object",
    };
    exception(
        "AttributeError",
        format!("'{got}' object has no attribute '{expected}' (input '{name}')"),
        &[],
    )
}

impl Inputs {
    /// `current_inputs` of an error report: each input as a one-item list.
    pub(crate) fn python_view(&self) -> Map<String, Value> {
        self.values
            .iter()
            .map(|(name, v)| {
                // Python's `format_value`: plain values as they are, anything else as `str()`.
                let shown = match v {
                    InputValue::Literal(l @ (Value::Array(_) | Value::Object(_))) => {
                        Value::String(super::pyfmt::repr(l))
                    }
                    InputValue::Literal(l) => l.clone(),
                    InputValue::Data(d) => Value::String(d.python_text()),
                };
                (name.clone(), Value::Array(vec![shown]))
            })
            .collect()
    }

    fn literal(&self, name: &str) -> Result<Value, NodeFailure> {
        match self.values.get(name) {
            Some(InputValue::Literal(v)) => Ok(v.clone()),
            Some(other) => Err(type_error(name, "__index__", other)),
            None => self
                .node_type
                .input(name)
                .and_then(|s| s.default())
                .cloned()
                .ok_or_else(|| exception("KeyError", super::pyfmt::repr_str(name), &[])),
        }
    }

    fn int(&self, name: &str) -> Result<i64, NodeFailure> {
        let v = self.literal(name)?;
        v.as_i64()
            .or_else(|| v.as_u64().map(|u| u as i64))
            .or_else(|| v.as_f64().map(|f| f as i64))
            .ok_or_else(|| type_error(name, "__int__", &InputValue::Literal(v)))
    }

    /// A non-negative size or count, capped so arithmetic on it cannot overflow.
    fn size(&self, name: &str) -> Result<u32, NodeFailure> {
        Ok(self.int(name)?.clamp(0, 1 << 20) as u32)
    }

    fn seed(&self, name: &str) -> Result<u64, NodeFailure> {
        let v = self.literal(name)?;
        v.as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .or_else(|| v.as_f64().map(|f| f as u64))
            .ok_or_else(|| type_error(name, "__int__", &InputValue::Literal(v)))
    }

    fn float(&self, name: &str) -> Result<f64, NodeFailure> {
        let v = self.literal(name)?;
        v.as_f64()
            .ok_or_else(|| type_error(name, "__float__", &InputValue::Literal(v)))
    }

    fn string(&self, name: &str) -> Result<String, NodeFailure> {
        Ok(super::pyfmt::str(&self.literal(name)?))
    }

    fn boolean(&self, name: &str) -> Result<bool, NodeFailure> {
        Ok(super::pyfmt::truthy(&self.literal(name)?))
    }

    fn data(&self, name: &str) -> Result<&Data, NodeFailure> {
        match self.values.get(name) {
            Some(InputValue::Data(d)) => Ok(d),
            Some(other) => Err(type_error(name, "shape", other)),
            None => Err(exception(
                "TypeError",
                format!("missing 1 required positional argument: '{name}'"),
                &[],
            )),
        }
    }

    fn image(&self, name: &str) -> Result<Arc<Batch>, NodeFailure> {
        match self.data(name)? {
            Data::Image(b) => Ok(b.clone()),
            other => Err(type_error(name, "shape", &InputValue::Data(other.clone()))),
        }
    }
}

/// Runs one node.
pub(crate) async fn run(
    kind: NodeKind,
    inputs: &Inputs,
    rep: &mut Reporter,
) -> Result<NodeResult, NodeFailure> {
    match kind {
        NodeKind::LabSlowSteps => lab_slow_steps(inputs, rep).await,
        NodeKind::LabLongRun => lab_long_run(inputs, rep).await,
        NodeKind::LabRaiseError => Err(exception(
            "RuntimeError",
            inputs.string("message")?,
            &[(
                "custom_nodes/comfy_test_nodes/__init__.py",
                145,
                "run",
                "raise RuntimeError(message)",
            )],
        )),
        NodeKind::LabSendText => lab_send_text(inputs, rep),
        NodeKind::EmptyImage => {
            let (w, h, n) = (
                inputs.size("width")?,
                inputs.size("height")?,
                inputs.size("batch_size")?,
            );
            check_pixels(w, h, n)?;
            let color = inputs.int("color")?.clamp(0, 0xFF_FFFF) as u32;
            let batch =
                blocking(move || (0..n.max(1)).map(|_| images::solid(w, h, color)).collect())
                    .await?;
            Ok(image_result(batch))
        }
        NodeKind::ImageScale => image_scale(inputs).await,
        NodeKind::ImageBlend => image_blend(inputs).await,
        NodeKind::SaveImage => {
            let prefix = inputs.string("filename_prefix")?;
            save_images(inputs.image("images")?, &prefix, "output", rep).await
        }
        NodeKind::PreviewImage => {
            let prefix = rep.sim.files().preview_prefix(&rep.node_id);
            save_images(inputs.image("images")?, &prefix, "temp", rep).await
        }
        NodeKind::SaveImageWebsocket => {
            let batch = inputs.image("images")?;
            let total = batch.len() as f64;
            for (step, img) in batch.iter().enumerate() {
                let img = img.clone();
                let png = blocking(move || images::encode_png(&img, true)).await?;
                rep.progress(
                    step as f64,
                    total,
                    Some(Preview {
                        format: ImageFormat::Png,
                        data: png,
                    }),
                )?;
            }
            Ok(NodeResult {
                outputs: vec![],
                ui: None,
            })
        }
        NodeKind::CheckpointLoaderSimple => checkpoint_loader(inputs, rep).await,
        NodeKind::ClipTextEncode => clip_text_encode(inputs, rep).await,
        NodeKind::EmptyLatentImage => {
            let latent = Latent {
                width: inputs.size("width")?,
                height: inputs.size("height")?,
                batch: inputs.size("batch_size")?.max(1),
                content: None,
            };
            Ok(NodeResult {
                outputs: vec![Data::Latent(Arc::new(latent))],
                ui: None,
            })
        }
        NodeKind::KSampler => ksampler(inputs, rep).await,
        NodeKind::VaeDecode => vae_decode(inputs, rep).await,
    }
}

fn image_result(batch: Batch) -> NodeResult {
    NodeResult {
        outputs: vec![Data::Image(Arc::new(batch))],
        ui: None,
    }
}

async fn lab_slow_steps(inputs: &Inputs, rep: &mut Reporter) -> Result<NodeResult, NodeFailure> {
    let steps = inputs.int("steps")?.max(1) as u64;
    let delay = inputs.float("delay")?;
    let seed = inputs.seed("seed")?;
    let (w, h) = (inputs.size("width")?, inputs.size("height")?);
    check_pixels(w, h, 1)?;
    let preview_size = inputs.size("preview_size")?.max(1);
    let send_text = inputs.boolean("send_text")?;
    let (final_image, small) = blocking(move || {
        let img = images::lab_pattern(seed, w, h);
        let small = images::contain(&img, preview_size);
        (img, small)
    })
    .await?;
    let small = Arc::new(small);
    for step in 1..=steps {
        rep.sleep(rep.sim.pace.seconds(delay)).await?;
        let frame = small.clone();
        let jpeg = blocking(move || {
            images::encode_jpeg(&images::lab_progress(&frame, seed, step, steps), 95)
        })
        .await?;
        rep.progress(
            step as f64,
            steps as f64,
            Some(Preview {
                format: ImageFormat::Jpeg,
                data: jpeg,
            }),
        )?;
        if send_text {
            rep.text(&format!("step {step}/{steps} (seed {seed})"));
        }
    }
    Ok(image_result(vec![final_image]))
}

/// Sends `text` as progress text, in one frame or split where `split_at` occurs (an escape
/// sequence can then straddle two frames), then each group of hex bytes in `raw_frames` as a
/// progress text frame of exactly those bytes, valid UTF-8 or not. With `raise_error` it raises
/// with `text`, which the traceback shows too, as the source line of a node that has the text
/// written into its code.
fn lab_send_text(inputs: &Inputs, rep: &Reporter) -> Result<NodeResult, NodeFailure> {
    let text = inputs.string("text")?;
    let split_at = inputs.string("split_at")?;
    let pieces: Vec<&str> = if split_at.is_empty() {
        vec![text.as_str()]
    } else {
        text.split(split_at.as_str()).collect()
    };
    for piece in pieces {
        rep.text(piece);
    }
    for group in inputs.string("raw_frames")?.split_whitespace() {
        let bytes = hex_bytes(group).ok_or_else(|| {
            exception(
                "ValueError",
                "non-hexadecimal number found in fromhex() arg",
                &[],
            )
        })?;
        // A type 3 frame as ComfyUI lays it out: the node id with its length, then the text.
        let mut payload = Vec::with_capacity(4 + rep.node_id.len() + bytes.len());
        payload.extend_from_slice(&(rep.node_id.len() as u32).to_be_bytes());
        payload.extend_from_slice(rep.node_id.as_bytes());
        payload.extend_from_slice(&bytes);
        let frame = BinaryFrame::Unknown {
            event_type: comfy_client::binary::TEXT,
            payload: payload.into(),
        };
        rep.sim.hub.send_binary(Target::All, &frame);
    }
    if inputs.boolean("raise_error")? {
        return Err(exception(
            "RuntimeError",
            text.clone(),
            &[(
                "custom_nodes/comfy_test_nodes/__init__.py",
                171,
                "send_text",
                &format!("raise RuntimeError(\"{text}\")"),
            )],
        ));
    }
    Ok(NodeResult {
        outputs: vec![],
        ui: None,
    })
}

/// `bytes.fromhex` for one group of hex digits without spaces.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let digits: Option<Vec<u8>> = hex
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect();
    let digits = digits?;
    if digits.len() % 2 != 0 {
        return None;
    }
    Some(
        digits
            .chunks(2)
            .map(|pair| (pair[0] << 4) | pair[1])
            .collect(),
    )
}

async fn lab_long_run(inputs: &Inputs, rep: &mut Reporter) -> Result<NodeResult, NodeFailure> {
    let steps = inputs.int("steps")?.max(1) as u64;
    let delay = inputs.float("delay")?;
    let seed = inputs.seed("seed")?;
    for step in 1..=steps {
        rep.sleep(rep.sim.pace.seconds(delay)).await?;
        rep.progress(step as f64, steps as f64, None)?;
        if step % 10 == 0 {
            rep.text(&format!("long run {step}/{steps}"));
        }
    }
    Ok(image_result(vec![images::lab_pattern(seed, 64, 64)]))
}

async fn image_scale(inputs: &Inputs) -> Result<NodeResult, NodeFailure> {
    let batch = inputs.image("image")?;
    let method = inputs.string("upscale_method")?;
    let (mut w, mut h) = (inputs.size("width")?, inputs.size("height")?);
    let crop = inputs.string("crop")? == "center";
    let Some(first) = batch.first() else {
        return Ok(image_result(vec![]));
    };
    let (ow, oh) = first.dimensions();
    // Zero keeps the aspect ratio from the other side, as ComfyUI does.
    if w == 0 && h == 0 {
        (w, h) = (ow, oh);
    } else if w == 0 {
        w = ((ow as f64 * h as f64 / oh.max(1) as f64).round() as u32).max(1);
    } else if h == 0 {
        h = ((oh as f64 * w as f64 / ow.max(1) as f64).round() as u32).max(1);
    }
    check_pixels(w, h, batch.len() as u32)?;
    let filter = match method.as_str() {
        "nearest-exact" => image::imageops::FilterType::Nearest,
        "bicubic" => image::imageops::FilterType::CatmullRom,
        "lanczos" => image::imageops::FilterType::Lanczos3,
        _ => image::imageops::FilterType::Triangle,
    };
    let scaled = blocking(move || {
        batch
            .iter()
            .map(|img| {
                let view = if crop {
                    center_crop(img, w, h)
                } else {
                    img.clone()
                };
                image::imageops::resize(&view, w.max(1), h.max(1), filter)
            })
            .collect()
    })
    .await?;
    Ok(image_result(scaled))
}

/// Crops to the target aspect ratio around the centre.
fn center_crop(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (ow, oh) = img.dimensions();
    let target = w.max(1) as f64 / h.max(1) as f64;
    let current = ow.max(1) as f64 / oh.max(1) as f64;
    let (cw, ch) = if current > target {
        (
            ((oh as f64 * target).round() as u32).clamp(1, ow.max(1)),
            oh,
        )
    } else {
        (
            ow,
            ((ow as f64 / target).round() as u32).clamp(1, oh.max(1)),
        )
    };
    image::imageops::crop_imm(
        img,
        ow.saturating_sub(cw) / 2,
        oh.saturating_sub(ch) / 2,
        cw,
        ch,
    )
    .to_image()
}

async fn image_blend(inputs: &Inputs) -> Result<NodeResult, NodeFailure> {
    let first = inputs.image("image1")?;
    let second = inputs.image("image2")?;
    let factor = inputs.float("blend_factor")?.clamp(0.0, 1.0) as f32;
    let mode = inputs.string("blend_mode")?;
    let blended = blocking(move || {
        first
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let Some(b) = second.get(i % second.len().max(1)) else {
                    return a.clone();
                };
                let b = if b.dimensions() == a.dimensions() {
                    b.clone()
                } else {
                    image::imageops::resize(
                        b,
                        a.width(),
                        a.height(),
                        image::imageops::FilterType::CatmullRom,
                    )
                };
                RgbImage::from_fn(a.width(), a.height(), |x, y| {
                    let (pa, pb) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
                    image::Rgb(std::array::from_fn(|c| {
                        let (u, v) = (f32::from(pa[c]) / 255.0, f32::from(pb[c]) / 255.0);
                        let mixed = blend_channel(&mode, u, v);
                        ((u * (1.0 - factor) + mixed * factor).clamp(0.0, 1.0) * 255.0 + 0.5) as u8
                    }))
                })
            })
            .collect()
    })
    .await?;
    Ok(image_result(blended))
}

fn blend_channel(mode: &str, a: f32, b: f32) -> f32 {
    match mode {
        "multiply" => a * b,
        "screen" => 1.0 - (1.0 - a) * (1.0 - b),
        "overlay" => {
            if a <= 0.5 {
                2.0 * a * b
            } else {
                1.0 - 2.0 * (1.0 - a) * (1.0 - b)
            }
        }
        "soft_light" => {
            if b <= 0.5 {
                a - (1.0 - 2.0 * b) * a * (1.0 - a)
            } else {
                let g = if a <= 0.25 {
                    ((16.0 * a - 12.0) * a + 4.0) * a
                } else {
                    a.sqrt()
                };
                a + (2.0 * b - 1.0) * (g - a)
            }
        }
        "difference" => (a - b).abs(),
        _ => b,
    }
}

/// `folder_paths.get_save_image_path`: the prefix's folder part must stay inside the folder.
fn split_prefix(prefix: &str) -> Result<(String, String), NodeFailure> {
    let mut parts: Vec<&str> = Vec::new();
    for part in prefix.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(exception(
                        "Exception",
                        "**** ERROR: Saving image outside the output folder is not allowed.",
                        &[
                            (
                                "nodes.py",
                                1637,
                                "save_images",
                                "full_output_folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path(filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])",
                            ),
                            (
                                "folder_paths.py",
                                448,
                                "get_save_image_path",
                                "raise Exception(err)",
                            ),
                        ],
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    if prefix.starts_with('/') {
        return Err(exception(
            "Exception",
            "**** ERROR: Saving image outside the output folder is not allowed.",
            &[],
        ));
    }
    let filename = parts.pop().unwrap_or(".").to_string();
    Ok((parts.join("/"), filename))
}

async fn save_images(
    batch: Arc<Batch>,
    prefix: &str,
    folder: &str,
    rep: &mut Reporter,
) -> Result<NodeResult, NodeFailure> {
    let (subfolder, name) = split_prefix(prefix)?;
    let fast = folder == "temp";
    let mut refs = Vec::new();
    for (i, img) in batch.iter().enumerate() {
        let img = img.clone();
        let png = blocking(move || images::encode_png(&img, fast)).await?;
        let mut files = rep.sim.files();
        let counter = files.next_counter(folder, &subfolder, &name);
        let filename = format!(
            "{}_{counter:05}_.png",
            name.replace("%batch_num%", &i.to_string())
        );
        files.put(
            FileKey {
                folder: folder.into(),
                subfolder: subfolder.clone(),
                filename: filename.clone(),
            },
            png,
        );
        refs.push(ImageRef {
            filename,
            subfolder: subfolder.clone(),
            folder: folder.into(),
        });
    }
    Ok(NodeResult {
        outputs: vec![],
        ui: Some(NodeOutput {
            images: refs,
            other: Map::new(),
        }),
    })
}

fn checkpoint(inputs: &Inputs, name: &str) -> Result<Arc<Checkpoint>, NodeFailure> {
    match inputs.data(name)? {
        Data::Model(c) | Data::Clip(c) | Data::Vae(c) => Ok(c.clone()),
        other => Err(type_error(
            name,
            "patcher",
            &InputValue::Data(other.clone()),
        )),
    }
}

fn conditioning(inputs: &Inputs, name: &str) -> Result<Arc<Conditioning>, NodeFailure> {
    match inputs.data(name)? {
        Data::Conditioning(c) => Ok(c.clone()),
        other => Err(type_error(name, "copy", &InputValue::Data(other.clone()))),
    }
}

fn latent(inputs: &Inputs, name: &str) -> Result<Arc<Latent>, NodeFailure> {
    match inputs.data(name)? {
        Data::Latent(l) => Ok(l.clone()),
        other => Err(type_error(
            name,
            "samples",
            &InputValue::Data(other.clone()),
        )),
    }
}

/// Puts a model part into (simulated) VRAM unless it is there, with ComfyUI's log lines.
async fn load_to_gpu(
    rep: &mut Reporter,
    key: String,
    label: &str,
    bytes: u64,
) -> Result<(), NodeFailure> {
    let free = {
        let machine = rep.sim.machine();
        if machine.loaded.iter().any(|(k, _)| *k == key) {
            return Ok(());
        }
        machine.free()
    };
    rep.sim.log(&format!("Requested to load {label}"));
    rep.sleep(
        rep.sim
            .pace
            .seconds(0.1 + bytes as f64 / f64::from(4u32 << 30)),
    )
    .await?;
    rep.sim.machine().loaded.push((key, bytes));
    rep.sim.log(&format!(
        "loaded completely {:.3} {:.4} True",
        free as f64 / f64::from(1u32 << 20),
        bytes as f64 / f64::from(1u32 << 20)
    ));
    Ok(())
}

async fn checkpoint_loader(inputs: &Inputs, rep: &mut Reporter) -> Result<NodeResult, NodeFailure> {
    let name = inputs.string("ckpt_name")?;
    let family = if name.to_lowercase().contains("xl") {
        Family::Sdxl
    } else {
        Family::Sd15
    };
    rep.sleep(rep.sim.pace.seconds(1.2)).await?;
    let (dtype, model_type) = match family {
        Family::Sd15 => ("torch.float16", "EPS"),
        Family::Sdxl => ("torch.float16", "EPS"),
    };
    rep.sim
        .log(&format!("model weight dtype {dtype}, manual cast: None"));
    rep.sim.log(&format!("model_type {model_type}"));
    rep.sim.log("Using pytorch attention in VAE");
    rep.sim
        .log("VAE load device: cuda:0, offload device: cpu, dtype: torch.bfloat16");
    rep.sim.log("CLIP/text encoder model load device: cuda:0, offload device: cpu, current: cpu, dtype: torch.float16");
    let ckpt = Arc::new(Checkpoint { name, family });
    Ok(NodeResult {
        outputs: vec![
            Data::Model(ckpt.clone()),
            Data::Clip(ckpt.clone()),
            Data::Vae(ckpt),
        ],
        ui: None,
    })
}

async fn clip_text_encode(inputs: &Inputs, rep: &mut Reporter) -> Result<NodeResult, NodeFailure> {
    let text = inputs.string("text")?;
    let clip = checkpoint(inputs, "clip")?;
    let (label, bytes) = clip.clip();
    load_to_gpu(rep, format!("{}:clip", clip.name), label, bytes).await?;
    rep.sleep(rep.sim.pace.seconds(0.05)).await?;
    Ok(NodeResult {
        outputs: vec![Data::Conditioning(Arc::new(Conditioning { text }))],
        ui: None,
    })
}

/// The largest side of sampler previews (ComfyUI allows up to 512; a terminal pane needs less,
/// and this keeps a 200-step run cheap).
const PREVIEW_SIDE: u32 = 192;

async fn ksampler(inputs: &Inputs, rep: &mut Reporter) -> Result<NodeResult, NodeFailure> {
    let model = checkpoint(inputs, "model")?;
    let seed = inputs.seed("seed")?;
    let steps = inputs.int("steps")?.max(1) as u64;
    let positive = conditioning(inputs, "positive")?;
    conditioning(inputs, "negative")?;
    let empty = latent(inputs, "latent_image")?;
    let (w, h, batch) = (empty.width.max(8), empty.height.max(8), empty.batch.max(1));

    let label = match model.family {
        Family::Sd15 => "BaseModel",
        Family::Sdxl => "SDXL",
    };
    load_to_gpu(
        rep,
        format!("{}:unet", model.name),
        label,
        model.unet_bytes(),
    )
    .await?;
    // Working memory grows with the latent; too much is CUDA running out of memory.
    let working = (u64::from(w) * u64::from(h) * u64::from(batch)).saturating_mul(2_400);
    let (total, free) = {
        let m = rep.sim.machine();
        (m.vram_total, m.free())
    };
    if working > free {
        rep.sim.log("Got an OOM, unloading all loaded models.");
        rep.sim.machine().loaded.clear();
        return Err(out_of_memory(
            working,
            total,
            free,
            &[
                (
                    "nodes.py",
                    1525,
                    "sample",
                    "return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=denoise)",
                ),
                (
                    "nodes.py",
                    1492,
                    "common_ksampler",
                    "samples = comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,",
                ),
                (
                    "comfy/samplers.py",
                    1163,
                    "sample",
                    "return self.inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)",
                ),
            ],
        ));
    }
    rep.sim.machine().active = working;
    let result = sample(
        rep,
        &positive.text,
        seed,
        steps,
        (w, h, batch),
        model.family,
    )
    .await;
    rep.sim.machine().active = 0;
    result?;
    let per_step = rep
        .sim
        .pace
        .seconds(step_seconds(w, h, batch, model.family));
    let secs = per_step.as_secs_f64() * steps as f64;
    rep.sim.log(&format!(
        "100%|██████████| {steps}/{steps} [{:02}:{:02}<00:00, {:5.2}it/s]",
        secs as u64 / 60,
        secs as u64 % 60,
        steps as f64 / secs.max(1e-3)
    ));
    Ok(NodeResult {
        outputs: vec![Data::Latent(Arc::new(Latent {
            width: w,
            height: h,
            batch,
            content: Some((positive.text.clone(), seed)),
        }))],
        ui: None,
    })
}

/// Nominal seconds per sampler step: 0.1 for one 512² SD1.5 image, more for bigger latents.
fn step_seconds(w: u32, h: u32, batch: u32, family: Family) -> f64 {
    let area = f64::from(w) * f64::from(h) * f64::from(batch) / (512.0 * 512.0);
    let base = match family {
        Family::Sd15 => 0.1,
        Family::Sdxl => 0.12,
    };
    base * area.powf(0.85).max(0.25)
}

async fn sample(
    rep: &mut Reporter,
    prompt: &str,
    seed: u64,
    steps: u64,
    (w, h, batch): (u32, u32, u32),
    family: Family,
) -> Result<(), NodeFailure> {
    let scene = Scene::new(prompt, seed);
    let side = PREVIEW_SIDE.min(w.max(h)).min(family.native_side());
    let (pw, ph) = if w >= h {
        (
            side,
            ((h as f64 * side as f64 / w as f64).round() as u32).max(1),
        )
    } else {
        (
            ((w as f64 * side as f64 / h as f64).round() as u32).max(1),
            side,
        )
    };
    let target = Arc::new(blocking(move || scene.render(pw, ph)).await?);
    let per_step = rep.sim.pace.seconds(step_seconds(w, h, batch, family));
    for step in 1..=steps {
        rep.sleep(per_step).await?;
        let target = target.clone();
        let progress = step as f32 / steps as f32;
        let jpeg = blocking(move || {
            images::encode_jpeg(&images::denoise_preview(&target, progress, seed ^ step), 80)
        })
        .await?;
        rep.progress(
            step as f64,
            steps as f64,
            Some(Preview {
                format: ImageFormat::Jpeg,
                data: jpeg,
            }),
        )?;
    }
    Ok(())
}

async fn vae_decode(inputs: &Inputs, rep: &mut Reporter) -> Result<NodeResult, NodeFailure> {
    let samples = latent(inputs, "samples")?;
    let vae = checkpoint(inputs, "vae")?;
    let (w, h, n) = (samples.width, samples.height, samples.batch);
    check_pixels(w, h, n)?;
    load_to_gpu(rep, format!("{}:vae", vae.name), "AutoencoderKL", 159 << 20).await?;
    let area = f64::from(w) * f64::from(h) * f64::from(n) / (512.0 * 512.0);
    rep.sleep(rep.sim.pace.seconds(0.15 * area.max(0.25)))
        .await?;
    let content = samples.content.clone();
    let batch = blocking(move || {
        (0..n)
            .map(|i| match &content {
                Some((prompt, seed)) => {
                    Scene::new(prompt, seed.wrapping_add(u64::from(i))).render(w, h)
                }
                // Decoding an empty latent gives ComfyUI's flat brown-grey.
                None => images::solid(w, h, 0x7A_6F_63),
            })
            .collect()
    })
    .await?;
    Ok(image_result(batch))
}

/// The `meta` a history entry keeps for a node with UI output.
pub(crate) fn ui_meta(node_id: &str) -> Value {
    json!({"node_id": node_id, "display_node": node_id, "parent_node": null, "real_node_id": node_id})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_prefixes_split_into_folder_and_name() {
        assert_eq!(
            split_prefix("lab/full").unwrap(),
            ("lab".into(), "full".into())
        );
        assert_eq!(
            split_prefix("ComfyUI").unwrap(),
            ("".into(), "ComfyUI".into())
        );
        assert_eq!(
            split_prefix("a/./b/../c").unwrap(),
            ("a".into(), "c".into())
        );
        assert!(split_prefix("../escape").is_err());
        assert!(split_prefix("/etc/passwd").is_err());
    }

    #[test]
    fn hex_groups_become_bytes() {
        assert_eq!(hex_bytes("1b5dfffe"), Some(vec![0x1b, 0x5d, 0xff, 0xfe]));
        assert_eq!(hex_bytes(""), Some(vec![]));
        assert_eq!(hex_bytes("abc"), None);
        assert_eq!(hex_bytes("zz"), None);
        assert_eq!(hex_bytes("+1"), None);
    }

    #[test]
    fn blend_modes() {
        assert_eq!(blend_channel("normal", 0.2, 0.8), 0.8);
        assert!((blend_channel("screen", 0.5, 0.5) - 0.75).abs() < 1e-6);
        assert!((blend_channel("difference", 0.2, 0.8) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn bigger_latents_take_longer_per_step() {
        assert!(
            step_seconds(1024, 1024, 1, Family::Sdxl) > step_seconds(512, 512, 1, Family::Sd15)
        );
        assert!(step_seconds(64, 64, 1, Family::Sd15) > 0.0);
    }
}
