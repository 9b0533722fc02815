//! The recorded ComfyUI traffic, replayed: transcripts read and write back exactly, every frame
//! decodes, the tracker ends where each scenario ended, and every recorded HTTP body parses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::de::DeserializeOwned;
use serde_json::Value;

use comfytop::comfy::api::{
    History, PromptAccepted, PromptInfo, PromptRejected, PromptRequest, QueueSnapshot, RawLogs,
    SystemStats,
};
use comfytop::comfy::protocol::{FeatureFlags, ServerMessage};
use comfytop::comfy::transcript::{TranscriptReader, format_line};
use comfytop::tracker::{NodeState, Outcome, Phase, PromptRecord, Tracker};
use comfytop::watch::LineFormat;
use comfytop::watch::replay::{Pace, ReplayReport, replay};

const REFERENCE: &str = comfytop::FIXTURES;

fn transcript_paths() -> Vec<PathBuf> {
    let dir = Path::new(REFERENCE).join("transcripts");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 18, "transcripts missing: {paths:?}");
    paths
}

fn transcript(name: &str) -> PathBuf {
    Path::new(REFERENCE)
        .join("transcripts")
        .join(format!("{name}.jsonl"))
}

struct Replayed {
    report: ReplayReport,
    stdout: String,
    stderr: String,
}

fn replay_bytes(input: &[u8], format: LineFormat) -> Replayed {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let report = replay(
        TranscriptReader::new(input),
        "test",
        format,
        Pace::Max,
        &mut stdout,
        &mut stderr,
    )
    .unwrap();
    Replayed {
        report,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn replay_named(names: &[&str], format: LineFormat) -> Replayed {
    let mut input = Vec::new();
    for name in names {
        input.extend(std::fs::read(transcript(name)).unwrap());
    }
    replay_bytes(&input, format)
}

fn only_prompt(tracker: &Tracker) -> &PromptRecord {
    let prompts: Vec<&PromptRecord> = tracker.prompts().collect();
    assert_eq!(prompts.len(), 1, "{prompts:#?}");
    prompts[0]
}

#[test]
fn every_transcript_reads_and_writes_back_to_the_same_json_per_line() {
    for path in transcript_paths() {
        let text = std::fs::read_to_string(&path).unwrap();
        let originals: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let frames: Vec<_> = TranscriptReader::new(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(frames.len(), originals.len(), "{}", path.display());
        for (frame, original) in frames.iter().zip(originals) {
            let written = format_line(frame.t, &frame.raw);
            assert!(written.ends_with('\n') && written.matches('\n').count() == 1);
            let written: Value = serde_json::from_str(&written).unwrap();
            let original: Value = serde_json::from_str(original).unwrap();
            assert_eq!(written, original, "{}", path.display());
        }
    }
}

#[test]
fn every_transcript_replays_without_malformed_or_unknown_frames() {
    for path in transcript_paths() {
        let input = std::fs::read(&path).unwrap();
        let frames = TranscriptReader::new(&input[..]).count() as u64;
        let human = replay_bytes(&input, LineFormat::Human);
        let name = path.display();
        assert_eq!(human.report.stats.frames, frames, "{name}");
        assert_eq!(human.report.stats.malformed, 0, "{name}: {}", human.stdout);
        assert_eq!(human.report.stats.unknown, 0, "{name}: {}", human.stdout);
        assert_eq!(human.report.bad_lines, 0, "{name}: {}", human.stderr);
        assert!(human.report.is_clean());
        assert_eq!(human.stdout.lines().count() as u64, frames, "{name}");
    }
}

#[test]
fn json_form_is_one_object_per_frame_with_t_and_event() {
    let known: BTreeSet<&str> = [
        "status",
        "feature_flags",
        "execution_start",
        "execution_cached",
        "executing",
        "executed",
        "progress",
        "progress_state",
        "execution_success",
        "execution_error",
        "execution_interrupted",
        "logs",
        "preview_image",
        "progress_text",
    ]
    .into();
    for path in transcript_paths() {
        let text = std::fs::read_to_string(&path).unwrap();
        let json = replay_bytes(text.as_bytes(), LineFormat::Json);
        let lines: Vec<&str> = json.stdout.lines().collect();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), records.len(), "{}", path.display());
        for (line, record) in lines.iter().zip(&records) {
            let out: Value = serde_json::from_str(line).unwrap();
            assert_eq!(out["t"], record["t"], "{line}");
            let event = out["event"].as_str().unwrap();
            assert!(known.contains(event), "{}: {line}", path.display());
            match record["event_type"].as_u64() {
                Some(1 | 4) => assert_eq!(event, "preview_image"),
                Some(3) => assert_eq!(event, "progress_text"),
                Some(other) => panic!("unexpected binary type {other}"),
                None => assert_eq!(event, record["data"]["type"]),
            }
        }
    }
}

#[test]
fn json_form_carries_the_decoded_fields() {
    let json = replay_named(&["b_feature_flags_metadata_previews"], LineFormat::Json);
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let preview = lines
        .iter()
        .find(|l| l["event"] == "preview_image")
        .unwrap();
    assert_eq!(preview["event_type"], 4);
    assert_eq!(preview["format"], "jpeg");
    assert_eq!(preview["prompt_id"], "56840cbe-8f7a-4835-b679-5f4ad356202e");
    assert_eq!(preview["node_id"], "1");
    assert!(preview["bytes"].as_u64().unwrap() > 100);
    let progress = lines.iter().find(|l| l["event"] == "progress").unwrap();
    assert_eq!(
        (&progress["value"], &progress["max"]),
        (&1.into(), &6.into())
    );
    let text = lines
        .iter()
        .find(|l| l["event"] == "progress_text")
        .unwrap();
    assert_eq!(text["node_id"], "1");
    assert!(text["text"].as_str().unwrap().starts_with("step 1/6"));
}

#[test]
fn full_run_succeeds_with_the_cached_node_outputs_and_step_maximum() {
    let replayed = replay_named(&["c_full_run_legacy_previews"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.id, "647d7248-af64-42c7-a02f-e276bf58c802");
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    assert_eq!(p.cached, ["5"]);
    assert_eq!(p.nodes["1"].max, 6.0);
    assert_eq!(p.nodes["1"].value, 6.0);
    let files: Vec<&str> = p.images().map(|(_, img)| img.filename.as_str()).collect();
    assert_eq!(
        files,
        ["full_00002_.png", "ComfyUI_temp_hzjur_00002_.png"],
        "node 3 then node 4"
    );
    assert!(
        replayed
            .stdout
            .contains("executed          prompt 647d7248 node 3: lab/full_00002_.png (output)")
    );
    assert!(
        replayed
            .report
            .summary()
            .contains("647d7248-af64-42c7-a02f-e276bf58c802 succeeded")
    );
}

#[test]
fn replay_summary_names_the_slowest_nodes_with_their_seconds() {
    let replayed = replay_named(&["c_full_run_legacy_previews"], LineFormat::Human);
    let summary = replayed.report.summary();
    let lines: Vec<&str> = summary.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "where the time went (slowest nodes):")
        .unwrap_or_else(|| panic!("{summary}"));
    // The transcript's clock: the slow node ran from 0.0037 to 1.8159. Its frames carry no
    // graph, so nodes go by their ids.
    let line = lines[at + 1];
    assert!(
        line.starts_with("  647d7248 node 1 1.8 s (100%), node "),
        "{summary}"
    );
    assert_eq!(
        line.matches("node ").count(),
        3,
        "the three slowest: {line}"
    );
    assert!(!line.contains("node 5 "), "cached, no time: {line}");

    // A failed run: what ran before the error counts too.
    let replayed = replay_named(&["e_execution_error"], LineFormat::Human);
    assert!(
        replayed
            .report
            .summary()
            .contains("\n  2fa6e51b node 1 0.6 s (100%), node 2 0.0 s (<1%)\n"),
        "{}",
        replayed.report.summary()
    );
}

#[test]
fn replay_across_a_reconnect_gives_no_node_times() {
    // The second socket's times start at 0 again: what ran between the two is unknown.
    let replayed = replay_named(
        &[
            "h_reconnect_same_client_id__1_before",
            "h_reconnect_same_client_id__2_after",
        ],
        LineFormat::Human,
    );
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    assert!(p.node_timings().is_empty());
    let summary = replayed.report.summary();
    assert!(!summary.contains("where the time went"), "{summary}");
}

#[test]
fn metadata_previews_run_succeeds() {
    let replayed = replay_named(&["b_feature_flags_metadata_previews"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    assert_eq!(replayed.report.stats.events["preview_image"], 6);
    assert!(
        replayed
            .stdout
            .contains("    0.310 preview_image     jpeg 1518 bytes, prompt 56840cbe node 1\n"),
        "{}",
        replayed.stdout
    );
    assert_eq!(
        replayed
            .report
            .tracker
            .features()
            .map(FeatureFlags::supports_preview_metadata),
        Some(true)
    );
}

#[test]
fn cached_rerun_lists_every_cached_node() {
    let replayed = replay_named(&["d_same_prompt_cached"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    let cached: BTreeSet<&str> = p.cached.iter().map(String::as_str).collect();
    assert_eq!(cached, ["1", "2", "3", "4", "5", "6"].into());
    assert!(p.nodes.values().all(|n| n.state == NodeState::Cached));
    assert!(
        replayed.stdout.contains("6 cached: 1, 2, 5, 6, 3, 4"),
        "{}",
        replayed.stdout
    );
}

#[test]
fn error_names_the_failing_node_and_exception() {
    let replayed = replay_named(&["e_execution_error"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    let Phase::Finished(Outcome::Error(e)) = &p.phase else {
        panic!("{:?}", p.phase)
    };
    assert_eq!(e.node_id.as_deref(), Some("2"));
    assert_eq!(e.node_type.as_deref(), Some("LabRaiseError"));
    assert_eq!(e.exception_type, "RuntimeError");
    assert_eq!(e.exception_message.trim(), "lab: deliberate failure");
    assert_eq!(p.nodes["1"].max, 3.0);
    assert!(
        replayed.stdout.contains(
            "prompt 2fa6e51b failed in node 2 (LabRaiseError): RuntimeError: lab: deliberate failure\n"
        ),
        "{}",
        replayed.stdout
    );
}

#[test]
fn interrupt_is_its_own_outcome() {
    let replayed = replay_named(&["f_interrupt"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    assert!(
        matches!(
            &p.phase,
            Phase::Finished(Outcome::Interrupted { node_id: Some(n), node_type: Some(t) })
                if n == "1" && t == "LabLongRun"
        ),
        "{:?}",
        p.phase
    );
    assert_eq!(p.nodes["1"].max, 10000.0);
    assert!(p.nodes["1"].value >= 20.0);
    assert!(replayed.report.summary().contains("interrupted at node 1"));
}

#[test]
fn queue_run_finishes_the_three_prompts_left_after_the_delete() {
    let replayed = replay_named(&["g_queue_and_delete"], LineFormat::Human);
    let finished: BTreeSet<&str> = replayed
        .report
        .tracker
        .prompts()
        .filter(|p| p.phase == Phase::Finished(Outcome::Success))
        .map(|p| p.id.as_str())
        .collect();
    // p3 was deleted before it ran: the socket never hears of it.
    let expected: BTreeSet<&str> = [
        "c2faa6db-62e2-4918-a1c0-285915b3a878",
        "2f97d7a2-c4d8-458e-8420-ab54ea05e405",
        "dd848e16-f739-420a-9a6d-3f66461a7fba",
    ]
    .into();
    assert_eq!(finished, expected);
    assert_eq!(replayed.report.tracker.prompts().count(), 3);
}

#[test]
fn a_recording_across_a_reconnect_follows_the_run_to_its_end() {
    // `watch --record` appends both sockets to one file; `t` restarts at the reconnect.
    let replayed = replay_named(
        &[
            "h_reconnect_same_client_id__1_before",
            "h_reconnect_same_client_id__2_after",
        ],
        LineFormat::Human,
    );
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    assert_eq!(p.nodes["1"].max, 12.0);
    assert_eq!(p.nodes["1"].value, 12.0);
    assert!(
        replayed
            .stdout
            .contains("executing         node 1 (running; sent on reconnect)"),
        "{}",
        replayed.stdout
    );
}

#[test]
fn the_watcher_sees_only_status_and_text() {
    let replayed = replay_named(&["i_second_client_watching__watcher"], LineFormat::Human);
    let events: BTreeSet<&str> = replayed
        .report
        .stats
        .events
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(events, ["progress_text", "status"].into());
    assert_eq!(replayed.report.tracker.prompts().count(), 0);
    assert_eq!(replayed.report.tracker.queue_remaining(), Some(0));

    let owner = replay_named(&["i_second_client_watching__owner"], LineFormat::Human);
    let p = only_prompt(&owner.report.tracker);
    assert_eq!(p.id, "07d2da80-c728-4ec0-8ca9-76659deb85fc");
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
}

#[test]
fn a_prompt_without_client_id_is_followed_through_its_broadcasts() {
    let replayed = replay_named(&["i2_prompt_without_client_id_watched"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.id, "6e40631f-b6b3-4a67-b94d-b33a4a8fb431");
    // No execution_success reaches anyone: only history could tell the outcome.
    assert!(!p.is_finished(), "{:?}", p.phase);
    assert!(p.nodes.values().any(|n| n.max > 1.0), "{:?}", p.nodes);
}

#[test]
fn logs_lines_reach_the_tracker_and_the_output() {
    let replayed = replay_named(&["k_logs_subscription"], LineFormat::Human);
    assert!(replayed.report.tracker.logs().count() >= 2);
    assert!(
        replayed
            .stdout
            .contains("logs              got prompt [terminal 80x24]"),
        "{}",
        replayed.stdout
    );
}

#[test]
fn requeued_prompt_fails_like_its_source() {
    let replayed = replay_named(&["m_requeue_from_history"], LineFormat::Human);
    let p = only_prompt(&replayed.report.tracker);
    assert_eq!(p.id, "f0ed1c00-b8bd-4678-92d3-e5dcdb0a86c9");
    assert!(matches!(p.phase, Phase::Finished(Outcome::Error(_))));
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_the_rest_is_played() {
    let good = std::fs::read_to_string(transcript("e_execution_error")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(
        3,
        "{\"t\":0.1,\"kind\":\"binary\",\"event_type\":1,\"b64\":\"%%%\"}",
    );
    lines.insert(7, "this line is not JSON");
    let input = lines.join("\n");
    let replayed = replay_bytes(input.as_bytes(), LineFormat::Human);
    assert_eq!(replayed.report.bad_lines, 2);
    assert_eq!(replayed.report.stats.frames, 25);
    assert!(!replayed.report.is_clean());
    let errors: Vec<&str> = replayed.stderr.lines().collect();
    assert_eq!(errors.len(), 2, "{}", replayed.stderr);
    assert!(
        errors[0].starts_with("test: line 4: \"b64\" is not base64"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("test: line 8: not a frame record"),
        "{errors:?}"
    );
    // The frames after the bad lines still made it to the end state.
    assert!(matches!(
        only_prompt(&replayed.report.tracker).phase,
        Phase::Finished(Outcome::Error(_))
    ));
}

#[test]
fn malformed_frames_are_lines_too_and_fail_the_replay() {
    let input = concat!(
        "{\"t\":0.1,\"kind\":\"text\",\"data\":{\"type\":\"progress\",\"data\":{\"value\":\"x\"}}}\n",
        "{\"t\":0.2,\"kind\":\"binary\",\"event_type\":3,\"b64\":\"AAAAAwAAAGQx\"}\n",
        "{\"t\":0.3,\"kind\":\"binary\",\"event_type\":9,\"b64\":\"AAAACQEC\"}\n",
        "{\"t\":0.4,\"kind\":\"text\",\"data\":{\"type\":\"crystools.monitor\",\"data\":{\"cpu\":3}}}\n",
    );
    let json = replay_bytes(input.as_bytes(), LineFormat::Json);
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["event"], "malformed");
    assert_eq!(lines[0]["kind"], "text");
    assert!(lines[0]["error"].as_str().unwrap().contains("\"progress\""));
    assert_eq!(lines[1]["event"], "malformed");
    assert_eq!(lines[1]["event_type"], 3);
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("runs past the end")
    );
    assert_eq!(lines[2]["event"], "unknown");
    assert_eq!(lines[2]["event_type"], 9);
    assert_eq!(lines[2]["bytes"], 2);
    assert_eq!(lines[3]["event"], "crystools.monitor");
    assert_eq!(lines[3]["data"]["cpu"], 3);
    let stats = &json.report.stats;
    assert_eq!((stats.malformed, stats.unknown), (2, 2));
    assert!(!json.report.is_clean());
}

#[test]
fn escape_sequences_from_the_server_never_reach_the_terminal() {
    let input = concat!(
        "{\"t\":0.1,\"kind\":\"text\",\"data\":{\"type\":\"execution_error\",\"data\":{",
        "\"prompt_id\":\"p\\u001b[2J\",\"node_id\":\"1\\u001b]0;owned\\u0007\",",
        "\"exception_type\":\"E\\u009b31m\",\"exception_message\":\"bad\\u001b[31m\\nthing\"}}}\n",
        "{\"t\":0.2,\"kind\":\"binary\",\"event_type\":3,\"b64\":\"AAAAAwAAAAExG1s1bX0=\"}\n",
    );
    for format in [LineFormat::Human, LineFormat::Json] {
        let out = replay_bytes(input.as_bytes(), format).stdout;
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            !out.chars()
                .any(|c| c != '\n' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c))),
            "{out:?}"
        );
    }
    let human = replay_bytes(input.as_bytes(), LineFormat::Human).stdout;
    assert!(human.contains("failed in node 1: E: bad thing"), "{human}");
}

fn run_binary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_comfytop"))
        .args(args)
        .env_remove("COMFYUI_URL")
        .output()
        .unwrap()
}

#[test]
fn the_binary_reports_bad_lines_by_number_plays_the_rest_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.jsonl");
    let good = std::fs::read_to_string(transcript("c_full_run_legacy_previews")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(1, "{\"t\":0.001,\"kind\":\"text\"}");
    std::fs::write(&path, lines.join("\n")).unwrap();

    let out = run_binary(&["replay", path.to_str().unwrap(), "--json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout.lines().count(), 49);
    assert!(
        stderr.contains("broken.jsonl: line 2: text frame without \"data\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("49 frames, 0 unknown, 0 malformed, 1 bad lines"),
        "{stderr}"
    );
    assert!(
        stderr.contains("647d7248-af64-42c7-a02f-e276bf58c802 succeeded"),
        "{stderr}"
    );
}

#[test]
fn the_binary_replays_a_clean_transcript_with_exit_zero_and_a_summary() {
    let path = transcript("e_execution_error");
    let out = run_binary(&["replay", path.to_str().unwrap()]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 25);
    assert!(
        stderr.contains("25 frames, 0 unknown, 0 malformed, 0 bad lines"),
        "{stderr}"
    );
    assert!(stderr.contains("execution_error 1"), "{stderr}");
    assert!(
        stderr.contains("failed in node 2 (LabRaiseError): RuntimeError"),
        "{stderr}"
    );
}

#[test]
fn the_binary_says_which_file_it_cannot_read() {
    let out = run_binary(&["replay", "/nonexistent/run.jsonl"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let not_done = comfytop::commands::Exit::NotDone.code();
    assert_eq!(out.status.code(), Some(i32::from(not_done)));
    assert!(stderr.contains("/nonexistent/run.jsonl"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_binary_refuses_a_url_that_is_not_http_or_ws_in_one_line() {
    let out = run_binary(&["watch", "ftp://example.com"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr,
        "comfytop: 'ftp://example.com' is not an http(s):// or ws(s):// URL\n"
    );
}

fn http_body<T: DeserializeOwned>(name: &str) -> T {
    let path = Path::new(REFERENCE).join("http").join(name);
    let record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    parse(&record["body"], name)
}

fn parse<T: DeserializeOwned>(value: &Value, what: &str) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{what} does not parse as {}: {e}",
            std::any::type_name::<T>()
        )
    })
}

#[test]
fn every_recorded_http_body_parses_into_its_type() {
    let dir = Path::new(REFERENCE).join("http");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    for name in &names {
        let record: Value =
            serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap();
        let stem = name.trim_end_matches(".json");
        match stem {
            "get_embeddings" => {
                let _: Vec<String> = http_body(name);
            }
            "get_features" => {
                let flags: FeatureFlags = http_body(name);
                assert!(flags.supports_preview_metadata());
                assert_eq!(flags.max_upload_size(), Some(104_857_600));
            }
            "get_history" | "get_history_max_items_2" => {
                let history: History = http_body(name);
                assert!(!history.is_empty(), "{name}");
            }
            "get_history_id_unknown" => assert!(http_body::<History>(name).is_empty()),
            s if s.starts_with("get_history_id_") => {
                let history: History = http_body(name);
                assert_eq!(history.len(), 1, "{name}");
            }
            "get_internal_logs_raw_trimmed" => {
                assert!(!http_body::<RawLogs>(name).entries.is_empty());
            }
            s if s.starts_with("get_object_info") => {
                let info: serde_json::Map<String, Value> = http_body(name);
                assert!(info.contains_key("LabSlowSteps"), "{name}");
            }
            s if s.starts_with("get_prompt_") => {
                let _: PromptInfo = http_body(name);
            }
            s if s.starts_with("get_queue_") => {
                let _: QueueSnapshot = http_body(name);
            }
            "get_system_stats" => {
                assert_eq!(
                    http_body::<SystemStats>(name).system.comfyui_version,
                    "0.3.64"
                );
            }
            s if s.starts_with("post_prompt_invalid_") => {
                assert_eq!(record["status"], 400, "{name}");
                let rejected: PromptRejected = http_body(name);
                assert!(!rejected.error.kind.is_empty(), "{name}");
                if record["request_body"].get("prompt").is_some() {
                    {
                        let _: PromptRequest = parse(&record["request_body"], name);
                    };
                }
            }
            s if s.starts_with("post_prompt_") => {
                assert_eq!(record["status"], 200, "{name}");
                let accepted: PromptAccepted = http_body(name);
                assert!(!accepted.prompt_id.is_empty());
                {
                    let _: PromptRequest = parse(&record["request_body"], name);
                };
            }
            "mutating_endpoints" => {
                for result in record["results"].as_array().unwrap() {
                    let request = result["request"].as_str().unwrap();
                    match &result["body"] {
                        Value::Null => assert_eq!(result["status"], 200, "{request}"),
                        body if request.starts_with("GET /history") => {
                            assert!(parse::<History>(body, request).is_empty());
                        }
                        body if request.starts_with("GET /queue") => {
                            {
                                let _: QueueSnapshot = parse(body, request);
                            };
                        }
                        other => panic!("{request}: unexpected body {other}"),
                    }
                }
            }
            "probes" => {
                for result in record["results"].as_array().unwrap() {
                    if let Some(first) = result.get("first_message") {
                        let text = first.to_string();
                        let message = ServerMessage::from_json(&text).unwrap();
                        assert!(matches!(message, ServerMessage::Status(ref s) if s.sid.is_some()));
                    }
                    let json_body = result["content_type"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("application/json"));
                    if json_body && result["request"] == "GET /prompt" {
                        let body: Value =
                            serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
                        {
                            let _: PromptInfo = parse(&body, "probe GET /prompt");
                        };
                    }
                }
            }
            // Status codes and headers only, no JSON bodies.
            "view_requests" | "api_prefix_check" => {}
            other => panic!("no type known for http/{other}.json; add it to this test"),
        }
    }
    assert!(names.len() >= 31, "{names:?}");
}

#[test]
fn human_lines_stay_as_reviewed() {
    for name in [
        "b_feature_flags_metadata_previews",
        "e_execution_error",
        "k_logs_subscription",
    ] {
        let replayed = replay_named(&[name], LineFormat::Human);
        insta::assert_snapshot!(name, replayed.stdout);
    }
}

#[test]
fn paced_replay_prints_the_same_lines_as_an_unpaced_one() {
    let input = std::fs::read(transcript("c_full_run_legacy_previews")).unwrap();
    let play = |pace| {
        let mut out = Vec::new();
        let report = replay(
            TranscriptReader::new(&input[..]),
            "test",
            LineFormat::Json,
            pace,
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), report.stats)
    };
    // Fast enough that the 2 s recording plays in microseconds.
    assert_eq!(play(Pace::Speed(1e7)), play(Pace::Max));
}
