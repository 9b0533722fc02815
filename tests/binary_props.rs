//! Binary frames and transcript lines under property tests: whatever arrives, parsing never
//! panics, and every well-formed frame survives encode → parse (and a transcript line) unchanged.

use bytes::Bytes;
use proptest::prelude::*;

use comfytop::comfy::RawFrame;
use comfytop::comfy::binary::{BinaryFrame, ImageFormat, PreviewImage, PreviewMetadata};
use comfytop::comfy::transcript::{format_line, parse_line};

fn image_format() -> impl Strategy<Value = ImageFormat> {
    prop_oneof![
        Just(ImageFormat::Jpeg),
        Just(ImageFormat::Png),
        Just(ImageFormat::Other)
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn metadata(format: ImageFormat) -> impl Strategy<Value = PreviewMetadata> {
    (
        ".{0,12}",
        ".{0,40}",
        prop::option::of(".{0,8}"),
        prop::option::of(".{0,8}"),
        prop::option::of(".{0,8}"),
    )
        .prop_map(
            move |(node_id, prompt_id, display_node_id, parent_node_id, real_node_id)| {
                PreviewMetadata {
                    node_id,
                    prompt_id,
                    display_node_id,
                    parent_node_id,
                    real_node_id,
                    // The format of a type-4 frame comes from its mime type.
                    image_type: format.mime().to_string(),
                }
            },
        )
}

/// Every kind of frame the server sends: types 1, 3, 4, any other type, and any of those
/// relayed by the comfytop bridge.
fn well_formed_frame() -> impl Strategy<Value = BinaryFrame> {
    prop_oneof![
        3 => server_frame(),
        1 => (".{0,40}", server_frame()).prop_map(|(owner, frame)| BinaryFrame::Relayed {
            owner,
            frame: Box::new(frame)
        }),
    ]
}

/// A frame as ComfyUI itself sends it.
fn server_frame() -> impl Strategy<Value = BinaryFrame> {
    prop_oneof![
        (image_format(), bytes(512)).prop_map(|(format, data)| {
            BinaryFrame::Preview(PreviewImage {
                format,
                metadata: None,
                data,
            })
        }),
        (".{0,16}", ".{0,200}")
            .prop_map(|(node_id, text)| BinaryFrame::ProgressText { node_id, text }),
        image_format()
            .prop_flat_map(|format| (Just(format), metadata(format), bytes(512)))
            .prop_map(|(format, metadata, data)| {
                BinaryFrame::Preview(PreviewImage {
                    format,
                    metadata: Some(metadata),
                    data,
                })
            }),
        (
            any::<u32>().prop_filter("a known type", |t| {
                ![1, 3, 4, comfytop::comfy::binary::RELAYED].contains(t)
            }),
            bytes(256)
        )
            .prop_map(|(event_type, payload)| BinaryFrame::Unknown {
                event_type,
                payload
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = BinaryFrame::parse(Bytes::from(data.clone()));
        let _ = RawFrame::Binary(Bytes::from(data)).decode();
    }

    #[test]
    fn random_frames_with_a_known_type_never_panic(
        event_type in prop_oneof![Just(1u32), Just(3u32), Just(4u32)],
        rest in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = event_type.to_be_bytes().to_vec();
        frame.extend(rest);
        let _ = BinaryFrame::parse(Bytes::from(frame));
    }

    #[test]
    fn random_text_never_panics(text in ".{0,300}") {
        let _ = RawFrame::Text(text).decode();
    }

    #[test]
    fn well_formed_frames_round_trip(frame in well_formed_frame()) {
        let wire = frame.encode();
        let parsed = BinaryFrame::parse(wire.clone());
        prop_assert_eq!(parsed.as_ref(), Ok(&frame));
        // And back to the same bytes.
        prop_assert_eq!(parsed.map(|f| f.encode()), Ok(wire));
    }

    #[test]
    fn truncated_frames_never_panic_and_cut_headers_are_errors(
        frame in well_formed_frame(),
        cut in any::<prop::sample::Index>(),
    ) {
        let wire = frame.encode();
        let len = cut.index(wire.len() + 1);
        let parsed = BinaryFrame::parse(wire.slice(..len));
        if len < 4 {
            prop_assert!(parsed.is_err(), "{len} bytes parsed: {parsed:?}");
        }
        let header = match &frame {
            BinaryFrame::Preview(p) if p.metadata.is_none() => 8,
            // Type 3 and 4: the length-prefixed part must be whole.
            BinaryFrame::ProgressText { node_id, .. } => 8 + node_id.len(),
            BinaryFrame::Preview(_) => wire.len() - preview_data_len(&frame),
            BinaryFrame::Unknown { .. } => 4,
            // The owner must be whole; what it wraps is checked as a frame of its own.
            BinaryFrame::Relayed { owner, .. } => 8 + owner.len() + 4,
        };
        if len < header {
            prop_assert!(parsed.is_err(), "cut at {len} of a {header}-byte header: {parsed:?}");
        }
    }

    #[test]
    fn frames_round_trip_through_a_transcript_line(
        frame in well_formed_frame(),
        t in 0.0f64..100_000.0,
    ) {
        let raw = RawFrame::Binary(frame.encode());
        let line = format_line(t, &raw);
        prop_assert_eq!(line.matches('\n').count(), 1);
        let read = parse_line(&line).map_err(TestCaseError::fail)?;
        prop_assert_eq!(read.raw, raw);
        prop_assert!((read.t - t).abs() <= 0.00005 + f64::EPSILON * t);
    }

    #[test]
    fn any_text_frame_round_trips_through_a_transcript_line(text in ".{0,200}") {
        let raw = RawFrame::Text(text);
        let line = format_line(1.0, &raw);
        prop_assert_eq!(line.matches('\n').count(), 1);
        prop_assert_eq!(parse_line(&line).map_err(TestCaseError::fail)?.raw, raw);
    }
}

fn preview_data_len(frame: &BinaryFrame) -> usize {
    match frame {
        BinaryFrame::Preview(p) => p.data.len(),
        _ => 0,
    }
}
