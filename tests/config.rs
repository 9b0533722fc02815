//! The config file through the binary: named servers on every command, header values from the
//! environment and from a command, errors that point at the line, `config path` and
//! `config example`, and key overrides that the dashboard's keys and footer follow.

mod support;

use std::time::Duration;

use comfy_sim::{SimConfig, SimHandle, SimServer};
use support::pty::{Answers, PtyApp};
use support::{comfytop, text, watch_until};

async fn output(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

async fn guarded_server() -> SimHandle {
    SimServer::start(SimConfig {
        step: Duration::from_millis(5),
        require_header: Some(("X-Comfy-Token".into(), "tok-31".into())),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_server_brings_its_headers_to_every_command() {
    let sim = guarded_server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "config.toml",
        &format!(
            "default = \"box\"\n\
             [servers.box]\nurl = \"{url}\"\nheaders = {{ X-Comfy-Token = {{ env = \"BOX_TOKEN\" }} }}\n\
             [servers.viacmd]\nurl = \"{url}\"\nheaders = {{ X-Comfy-Token = {{ command = \"echo tok-31\" }} }}\n\
             [servers.locked]\nurl = \"{url}\"\nread_only = true\n\
             headers = {{ X-Comfy-Token = \"tok-31\" }}\n",
            url = sim.url()
        ),
    );
    let with_config = |args: &[&str]| {
        let mut command = comfytop(args);
        command
            .env("COMFYTOP_CONFIG", &config)
            .env("BOX_TOKEN", "tok-31");
        command
    };
    for args in [
        &["queue"][..],
        &["queue", "@box"],
        &["queue", "box"],
        &["queue", "@viacmd"],
    ] {
        let out = output(with_config(args)).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "the queue is empty\n");
    }
    // `cancel` takes the name alone, as it takes an address alone; nothing runs, so 1.
    let out = output(with_config(&["cancel", "@box"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // read_only from the config refuses as --read-only does.
    let out = output(with_config(&["cancel", "@locked", "--all-pending"])).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("read-only"),
        "{}",
        text(&out.stderr)
    );

    // The WebSocket upgrade carries it too.
    let lines = watch_until(&["watch", "viacmd", "--config", &config], |l| {
        l.contains("-- connected to") || l.contains("refused")
    })
    .await;
    assert!(
        lines.last().is_some_and(|l| l.contains("-- connected to")),
        "{lines:?}"
    );
    // Without BOX_TOKEN the error says which variable is missing.
    let mut without_token = comfytop(&["watch", "@box", "--config", &config]);
    without_token.env_remove("BOX_TOKEN");
    let out = output(without_token).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "comfytop: server box, header X-Comfy-Token: $BOX_TOKEN is not set\n"
    );

    let out = output(with_config(&["queue", "@nope"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no server is named 'nope'")
            && text(&out.stderr).contains("the servers are box, locked, viacmd"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_an_error_at_its_line_and_column_and_the_example_parses() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.toml",
        "[servers.box]\nurl = \"http://box:8188\"\nimage-protocol = \"kitty\"\n",
    );
    let out = output(comfytop(&["queue", "--config", &bad])).await;
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out.stderr);
    assert!(
        said.starts_with(&format!(
            "comfytop: {bad}: TOML parse error at line 3, column 1"
        )),
        "{said}"
    );
    assert!(said.contains("unknown field `image-protocol`"), "{said}");
    // What needs no server does not read it.
    let out = output(comfytop(&["config", "path", "--config", &bad])).await;
    assert_eq!(text(&out.stdout), format!("{bad}\n"));

    let example = output(comfytop(&["config", "example"])).await;
    assert_eq!(example.status.code(), Some(0));
    let example_path = write(&dir, "example.toml", &text(&example.stdout));
    // The example parses: its default server needs $GPU1_TOKEN, and says so.
    let mut command = comfytop(&["queue", "--config", &example_path]);
    command.env_remove("GPU1_TOKEN");
    let out = output(command).await;
    assert_eq!(
        text(&out.stderr),
        "comfytop: server gpu1, header Authorization: $GPU1_TOKEN is not set\n"
    );

    let mut command = comfytop(&["config", "path"]);
    command.env("XDG_CONFIG_HOME", "/somewhere");
    assert_eq!(
        text(&output(command).await.stdout),
        "/somewhere/comfytop/config.toml\n"
    );
    let missing = output(comfytop(&["queue", "--config", "/no/such/config.toml"])).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read /no/such/config.toml"));
}

#[test]
fn the_dashboard_takes_its_keys_from_the_config() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(SimServer::start(SimConfig::default()))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "config.toml",
        &format!(
            "[servers.sim]\nurl = \"{}\"\nimage_protocol = \"none\"\n[keys]\nquit = \"x\"\nhelp = [\"h\", \"F1\"]\n",
            sim.url()
        ),
    );
    let mut app = PtyApp::spawn_with(
        &["@sim"],
        &[("COMFYTOP_CONFIG", &config)],
        100,
        30,
        Answers::Status,
    );
    let screen = app.wait_for("the footer with x", Duration::from_secs(20), |s| {
        s.contains("● connected") && s.contains("x quit") && s.contains("h/F1 help")
    });
    assert!(!screen.contains("q quit"), "{screen}");
    app.send(b"q");
    app.send(b"h");
    let help = app.wait_for("the help", Duration::from_secs(10), |s| {
        s.contains("Esc closes ─")
    });
    assert!(help.contains("x ") && help.contains("quit"), "{help}");
    app.send(b"\x1b");
    // Apart, or Esc and x arrive as Alt-x.
    app.wait_for("the help closed", Duration::from_secs(10), |s| {
        !s.contains("Esc closes ─")
    });
    app.send(b"x");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}
