//! `comfytop submit WORKFLOW.json [URL]`: queue an API-format workflow, print its prompt id, and
//! with `--wait` follow it to its end.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::comfy::api::PromptRequest;
use crate::comfy::http::{ComfyClient, HttpError};
use crate::comfy::server_url::ServerUrl;
use crate::control::{Access, ActionError, Done, Located, ServerAction, locate, perform};
use crate::identity::ClientIdentity;
use crate::workflow::{Override, class_inputs, parse_api_workflow, randomize_seeds};

use super::follow::{CtrlC, Ending, FollowEnd, Follower, OFFLINE_LIMIT, Terminal, format_secs};
use super::{Exit, clean, download, fail, not_comfy};
use crate::config::Config;

#[derive(Debug, Clone, Args)]
#[command(after_help = format!(
    "The prompt id is printed alone on stdout; everything else goes to stderr.\n\n{}",
    super::EXIT_STATUS_HELP
))]
pub struct SubmitArgs {
    /// API-format workflow (in ComfyUI: Workflow > Export (API)); `-` reads stdin
    #[arg(value_name = "WORKFLOW.json")]
    pub workflow: PathBuf,

    /// ComfyUI server: a URL, or a name from the config (gpu1 or @gpu1) [default:
    /// $COMFYUI_URL, else the config's default, else http://127.0.0.1:8188]
    #[arg(value_name = "URL|NAME")]
    pub url: Option<String>,

    #[command(flatten)]
    pub connection: crate::cli::ConnectionArgs,

    /// Queue it before every pending prompt
    #[arg(long)]
    pub front: bool,

    /// Follow the prompt until it ends, and exit with its outcome
    #[arg(long)]
    pub wait: bool,

    /// Set a node input before queueing, e.g. --set 3.steps=30 --set '6.text="a cat"'
    #[arg(long = "set", value_name = "NODE.INPUT=VALUE")]
    pub overrides: Vec<String>,

    /// Give every literal `seed` and `noise_seed` input a new random value
    #[arg(long)]
    pub random_seeds: bool,

    /// Save the outputs into DIR when the prompt ends (implies --wait; never overwrites)
    #[arg(long, value_name = "DIR")]
    pub download: Option<PathBuf>,

    /// Change nothing on the server: refuse to submit
    #[arg(long)]
    pub read_only: bool,

    /// Where to queue it: a server's name, a group of them (@studio) or `auto` (every server
    /// of the config); with several, the one with the shortest queue among those that have
    /// every node type the workflow uses
    #[arg(long, value_name = "auto|NAME", conflicts_with = "url")]
    pub to: Option<String>,

    /// Queue under this clientId instead of the one kept for the server (a comfytop
    /// dashboard on the server then shows the prompt as its own)
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

impl SubmitArgs {
    fn waits(&self) -> bool {
        self.wait || self.download.is_some()
    }
}

pub async fn run(args: SubmitArgs, config: &Config) -> Exit {
    let (server, read_only, loaded) = match destination(&args, config).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    // Following opens a socket, which needs an id of its own; queueing alone uses the kept one,
    // so a dashboard on this machine gets the prompt's live events.
    let identity = match &args.client_id {
        Some(id) => ClientIdentity::given(id),
        None if args.waits() => Ok(ClientIdentity::for_server(&server)),
        None => Ok(ClientIdentity::shared(&server)),
    };
    let identity = match identity {
        Ok(identity) => identity,
        Err(message) => {
            fail(message);
            return Exit::Usage;
        }
    };
    if let Some(note) = &identity.note {
        eprintln!("comfytop: {note}");
    }
    let client = match ComfyClient::new(server) {
        Ok(client) => client,
        Err(e) => {
            fail(e);
            return Exit::NotDone;
        }
    };
    let workflow = match loaded {
        Some(workflow) => workflow,
        None => match load_workflow(&args, &client).await {
            Ok(workflow) => workflow,
            Err(message) => {
                fail(message);
                return Exit::NotDone;
            }
        },
    };
    let client_id = identity.id.clone();
    let action = ServerAction::submit(PromptRequest {
        prompt: workflow,
        client_id: Some(client_id.clone()),
        front: args.front.then_some(true),
        ..PromptRequest::default()
    });
    let access = Access::from_read_only(args.read_only || read_only);
    if let Err(refusal) = access.check(&action) {
        // It names comfytop itself, so it goes without the "comfytop: " prefix.
        eprintln!("{refusal}");
        return Exit::NotDone;
    }
    let submission = Submission {
        client,
        client_id,
        action,
        access,
    };
    if args.waits() {
        submission.submit_and_wait(args.download.as_deref()).await
    } else {
        match submission.submit().await {
            Ok(_) => Exit::Success,
            Err(exit) => exit,
        }
    }
}

/// The server to queue on and whether its config makes it read-only: the one named, or with
/// `--to` over several, the best placed (see [`crate::placement::choose`]), with the workflow
/// it had to read for that; what was learned of each server goes to stderr.
async fn destination(
    args: &SubmitArgs,
    config: &Config,
) -> Result<(ServerUrl, bool, Option<serde_json::Value>), Exit> {
    let named: Vec<String> = match args.to.as_deref() {
        None => args.url.iter().cloned().collect(),
        Some("auto") => {
            if config.servers.is_empty() {
                fail("--to auto picks among the servers of the config, and it names none");
                return Err(Exit::Usage);
            }
            config
                .servers
                .keys()
                .map(|name| format!("@{name}"))
                .collect()
        }
        Some(to) => vec![to.to_string()],
    };
    let mut found = match crate::cli::targets(&named, false, &args.connection, config) {
        Ok(found) => found,
        Err(message) => {
            fail(message);
            return Err(Exit::Usage);
        }
    };
    if found.len() == 1 {
        let target = found.remove(0);
        let read_only = target.read_only();
        return Ok((target.server, read_only, None));
    }
    // A server the config keeps read-only takes nothing; another may.
    found.retain(|target| !target.read_only());
    if found.is_empty() {
        fail("every server named is read-only in the config; nothing was queued");
        return Err(Exit::NotDone);
    }
    let mut candidates = Vec::with_capacity(found.len());
    for target in &found {
        let client = ComfyClient::new(target.server.clone()).map_err(|e| {
            fail(e);
            Exit::NotDone
        })?;
        candidates.push(crate::placement::Candidate {
            name: target
                .name
                .clone()
                .unwrap_or_else(|| crate::format::server_name(&target.server)),
            client,
        });
    }
    // Read once (stdin cannot be read twice); input names are checked against the first
    // server's node definitions, and the chosen server validates the rest.
    let workflow = load_workflow(args, &candidates[0].client)
        .await
        .map_err(|message| {
            fail(message);
            Exit::NotDone
        })?;
    let types = crate::placement::node_types(&workflow);
    let (chosen, fits) = crate::placement::choose(&candidates, &types).await;
    for line in crate::placement::report(&candidates, &fits, chosen) {
        eprintln!("{line}");
    }
    match chosen {
        Some(index) => {
            let target = found.swap_remove(index);
            let read_only = target.read_only();
            Ok((target.server, read_only, Some(workflow)))
        }
        None => {
            fail("no server can take it; nothing was queued");
            Err(Exit::NotDone)
        }
    }
}

/// A prompt ready to be sent.
struct Submission {
    client: ComfyClient,
    client_id: String,
    action: ServerAction,
    access: Access,
}

impl Submission {
    /// Posts it once and prints its id alone on stdout; otherwise the error is printed.
    async fn submit(&self) -> Result<(String, f64), Exit> {
        let queued = post(&self.client, self.access, &self.action).await?;
        println!("{}", super::clean(&queued.0));
        let _ = std::io::stdout().flush();
        Ok(queued)
    }

    /// Connects, submits, follows the prompt to its end and downloads its outputs if asked.
    async fn submit_and_wait(self, download: Option<&Path>) -> Exit {
        let mut terminal = Terminal::stderr();
        // Caught from here on, so Ctrl-C never ends the process in the middle of the POST.
        let mut ctrl_c = CtrlC::listen();
        let stopped_early = || {
            fail("stopped before submitting; nothing was queued");
            Exit::StoppedWaiting
        };
        // The socket is up before the POST, so not one event of the prompt is missed.
        let connecting = Follower::connect(self.client.clone(), &self.client_id, &mut terminal);
        let connected = tokio::select! {
            connected = connecting => connected,
            () = ctrl_c.pressed() => return stopped_early(),
        };
        let mut follower = match connected {
            Ok(follower) => follower,
            Err(reason) => {
                fail(format_args!(
                    "cannot follow prompts on {}: {}\nNothing was queued.",
                    self.client.server(),
                    clean(&reason)
                ));
                return Exit::NotDone;
            }
        };
        if ctrl_c.was_pressed() {
            follower.close().await;
            return stopped_early();
        }
        let (prompt_id, number) = match self.submit().await {
            Ok(queued) => queued,
            Err(exit) => {
                follower.close().await;
                return exit;
            }
        };
        if let ServerAction::Submit(request) = &self.action {
            follower.submitted(&prompt_id, number, (**request).clone());
        }
        let end = follower
            .follow(&prompt_id, &mut terminal, &mut ctrl_c)
            .await;
        let server = self.client.server();
        let exit = match &end {
            FollowEnd::Finished(outcome) => ending_exit(follower.ending(outcome)),
            FollowEnd::StoppedByUser => {
                terminal.lines(vec![format!(
                    "stopped waiting; prompt {prompt_id} goes on. To cancel it: comfytop cancel \
                     {prompt_id} {server}"
                )]);
                Exit::StoppedWaiting
            }
            FollowEnd::Lost { reason } => {
                terminal.lines(vec![format!(
                    "gave up after the connection was down for {}: {}\nPrompt {prompt_id} may \
                     still run; see `comfytop queue {server}`.",
                    format_secs(OFFLINE_LIMIT.as_secs_f64()),
                    clean(reason),
                )]);
                Exit::NotDone
            }
        };
        let files = match (&end, download) {
            (FollowEnd::Finished(_), Some(_)) => {
                Some(outputs_of(&self.client, &follower, &prompt_id).await)
            }
            _ => None,
        };
        follower.close().await;
        let (Some(files), Some(dir)) = (files, download) else {
            return exit;
        };
        let saved = tokio::select! {
            saved = download::save_all(&self.client, &files, dir) => saved,
            () = ctrl_c.pressed() => {
                terminal.lines(vec!["download stopped".to_string()]);
                return Exit::StoppedWaiting;
            }
        };
        let mut lines = Vec::new();
        if files.is_empty() {
            lines.push("no outputs to download".to_string());
        }
        let mut failed = false;
        for result in saved {
            match result {
                Ok(path) => lines.push(format!("saved {}", path.display())),
                Err(error) => {
                    failed = true;
                    lines.push(format!("comfytop: cannot download {error}"));
                }
            }
        }
        terminal.lines(lines);
        if failed && exit == Exit::Success {
            Exit::Failed
        } else {
            exit
        }
    }
}

/// Reads, checks and adjusts the workflow; the error says what is wrong and where.
async fn load_workflow(
    args: &SubmitArgs,
    client: &ComfyClient,
) -> Result<serde_json::Value, String> {
    let (text, name) = if args.workflow.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the workflow from stdin: {e}"))?;
        (text, "stdin".to_string())
    } else {
        let name = args.workflow.display().to_string();
        let text = std::fs::read_to_string(&args.workflow)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        (text, name)
    };
    let mut workflow = parse_api_workflow(&text, &name).map_err(|e| e.to_string())?;
    // The inputs each class takes, asked of the server only for an input the workflow's node
    // does not have yet (an optional one, or a typo), once per class.
    let mut accepted: HashMap<String, Option<Vec<String>>> = HashMap::new();
    for spec in &args.overrides {
        let change = Override::parse(spec).map_err(|e| e.to_string())?;
        let class = change
            .class(&workflow)
            .map_err(|e| e.to_string())?
            .to_string();
        if !change.input_in_workflow(&workflow) && !accepted.contains_key(&class) {
            // A class the server does not know takes no input; the server refuses it later.
            let inputs = match client.object_info(Some(&class)).await {
                Ok(info) => Some(class_inputs(&info, &class).unwrap_or_default()),
                Err(_) => None,
            };
            accepted.insert(class.clone(), inputs);
        }
        let names = accepted.get(&class).and_then(Option::as_deref);
        change
            .apply(&mut workflow, names)
            .map_err(|e| e.to_string())?;
    }
    if args.random_seeds && randomize_seeds(&mut workflow, &mut rand::rng()) == 0 {
        eprintln!("note: --random-seeds: {name} has no literal seed or noise_seed input");
    }
    Ok(workflow)
}

/// Posts the prompt once. On success, its id and queue number; otherwise the error is printed.
async fn post(
    client: &ComfyClient,
    access: Access,
    action: &ServerAction,
) -> Result<(String, f64), Exit> {
    let result = perform(client, access, action).await;
    let http_error: Option<&HttpError> = match &result {
        Err(ActionError::Http(error)) => Some(error),
        Err(ActionError::MaybeQueued { source, .. }) => Some(source),
        _ => None,
    };
    if let Some(error) = http_error
        && let Some(not_comfy) = not_comfy(client, error).await
    {
        fail(format_args!("{not_comfy}\nNothing was queued."));
        return Err(Exit::NotDone);
    }
    match result {
        Ok(Done::Queued { accepted, .. }) => {
            if let Some(dropped) = accepted.dropped_outputs() {
                eprintln!("warning: {dropped}");
            }
            Ok((accepted.prompt_id, accepted.number))
        }
        Ok(other) => {
            fail(other.status_text());
            Err(Exit::NotDone)
        }
        Err(ActionError::MaybeQueued { prompt_id, source }) => {
            // The answer was lost, not the request: look for the prompt instead of sending it
            // again.
            let found = match &prompt_id {
                Some(id) => locate(client, id).await.ok(),
                None => None,
            };
            let number = match &found {
                Some(Located::Running(item)) | Some(Located::Pending { item, .. }) => {
                    Some(item.number)
                }
                Some(Located::Finished(entry)) => Some(entry.prompt.number),
                Some(Located::Unknown) | None => None,
            };
            match (prompt_id, number) {
                (Some(id), Some(number)) => {
                    eprintln!(
                        "note: the server's answer was lost, but it has prompt {id}: it was \
                         queued once"
                    );
                    Ok((id, number))
                }
                (Some(id), None) if found.is_some() => {
                    fail(format_args!(
                        "{source}\nPrompt {id} is neither in the queue nor in the history, so it \
                         was most likely not queued; it was not sent again."
                    ));
                    Err(Exit::NotDone)
                }
                (prompt_id, _) => {
                    fail(ActionError::MaybeQueued { prompt_id, source });
                    Err(Exit::NotDone)
                }
            }
        }
        Err(ActionError::Http(error @ HttpError::PromptRejected { .. })) => {
            fail(error);
            Err(Exit::NotDone)
        }
        Err(error) => {
            fail(format_args!("{error}\nNothing was queued."));
            Err(Exit::NotDone)
        }
    }
}

fn ending_exit(ending: Ending) -> Exit {
    match ending {
        Ending::Succeeded => Exit::Success,
        Ending::Failed => Exit::Failed,
        Ending::Interrupted | Ending::Deleted => Exit::Interrupted,
        Ending::Lost => Exit::Lost,
    }
}

/// The files to download: from the history entry (complete, also after reconnects), else from
/// what the live events said.
async fn outputs_of(
    client: &ComfyClient,
    follower: &Follower,
    prompt_id: &str,
) -> Vec<crate::comfy::protocol::ImageRef> {
    match client.history_item(prompt_id).await {
        Ok(Some(entry)) if !entry.outputs.is_empty() => download::files_of(entry.outputs.values()),
        _ => follower
            .tracker()
            .prompt(prompt_id)
            .map(super::follow::output_refs)
            .unwrap_or_default(),
    }
}
