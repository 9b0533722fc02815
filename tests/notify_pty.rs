//! The bytes a prompt's end sends to the terminal, read from a pseudo-terminal: the bell and an
//! OSC 9 notification, wrapped for tmux when `$TMUX` is set, once per prompt, and by default
//! only for prompts this comfytop queued.

mod support;

use std::time::{Duration, Instant};

use support::pty::{Answers, PtyApp};
use support::{fast_simulator, run, run_prompt_from_elsewhere, text, workflow_path};

const OSC_9: &str = "\x1b]9;comfytop: prompt ";
const OSC_9_IN_TMUX: &str = "\x1bPtmux;\x1b\x1b]9;comfytop: prompt ";

fn dashboard(url: &str, args: &[&str], env: &[(&str, &str)]) -> PtyApp {
    let mut all = vec![url, "--image-protocol", "none"];
    all.extend_from_slice(args);
    let app = PtyApp::spawn_with(&all, env, 100, 30, Answers::Status);
    app.wait_for("connected", Duration::from_secs(20), |s| {
        s.contains("● connected")
    });
    app
}

/// Waits (at most 10 s) until the program wrote `needle` `times` times; returns the count then.
fn count_within(app: &PtyApp, needle: &str, times: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = app.output().matches(needle).count();
        if count >= times || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_finished_prompt_rings_and_notifies_once_wrapped_for_tmux_when_inside_it() {
    let (runtime, sim) = fast_simulator();
    let url = sim.url();
    for (env, sequence) in [
        (vec![], OSC_9),
        (
            vec![("TMUX", "/tmp/tmux-1000/default,4242,0")],
            OSC_9_IN_TMUX,
        ),
    ] {
        let mut app = dashboard(&url, &["--notify", "both", "--notify-all"], &env);
        let id = run_prompt_from_elsewhere(&runtime, &url);
        let short: String = id.chars().take(8).collect();
        let rung = format!("\x07{sequence}{short} finished on {url}");
        assert_eq!(count_within(&app, &rung, 1), 1, "{:?}", app.output());
        // Later answers about the same prompt (the queue, the history) notify nothing more.
        run_prompt_from_elsewhere(&runtime, &url);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(app.output().matches(&rung).count(), 1);
        assert_eq!(app.output().matches(sequence).count(), 2, "one per prompt");
        app.send(b"q");
        assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    }
}

#[test]
fn by_default_only_prompts_this_comfytop_queued_notify() {
    let (runtime, sim) = fast_simulator();
    let url = sim.url();
    let mut app = dashboard(&url, &["--notify", "osc"], &[]);
    run_prompt_from_elsewhere(&runtime, &url);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(app.output().matches(OSC_9).count(), 0, "{:?}", app.output());

    // `submit` queues under the id the dashboard keeps: the dashboard's own prompt.
    let submitted = runtime.block_on(run(&["submit", &workflow_path("small_save.json"), &url]));
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let id = text(&submitted.stdout).trim().to_string();
    let short: String = id.chars().take(8).collect();
    let notified = format!("{OSC_9}{short} finished on {url}");
    assert_eq!(count_within(&app, &notified, 1), 1, "{}", app.screen());
    assert!(
        !app.output().contains(&format!("\x07{notified}")),
        "osc alone rings no bell"
    );
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}
