//! `comfytop cancel [PROMPT_ID | --all-pending] [URL]`: stop one prompt, whichever way it takes
//! (a targeted interrupt if it runs, a delete if it waits), or delete every pending prompt. It
//! asks nothing, so it reads the queue first, hits exactly what it found, then checks and says
//! what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;

use crate::comfy::api::{QueueItem, QueueSnapshot};
use crate::comfy::http::{ComfyClient, HttpError};
use crate::comfy::server_url::ServerUrl;
use crate::control::{
    Access, Action, ActionError, Located, Place, history_outcome, locate, locate_in_queue,
    output_classes, owner_label, perform,
};
use crate::tracker::Outcome;

use super::{Exit, clean, fail, resolve_server};

/// How long to watch an interrupted prompt for its end before reporting that it still runs.
const INTERRUPT_WATCH: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
A lone argument with `:`, `/` or `.` in it is the server: `comfytop cancel gpu-box:8188` interrupts
what runs there. Nothing is asked; what was hit is printed.

Exit status: 0 something was cancelled, 1 there was nothing to cancel (not running, not pending,
already finished), 3 the server could not be reached or comfytop is read-only.")]
pub struct CancelArgs {
    /// The prompt to cancel: interrupted if it runs, deleted if it waits
    /// [default: the prompt running now]
    #[arg(value_name = "PROMPT_ID")]
    pub prompt_id: Option<String>,

    /// ComfyUI server [default: $COMFYUI_URL, else http://127.0.0.1:8188]
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Delete every pending prompt, whoever queued it (the running one goes on)
    #[arg(long)]
    pub all_pending: bool,

    /// Change nothing on the server: refuse to cancel
    #[arg(long)]
    pub read_only: bool,
}

/// What to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Prompt(String),
    Running,
    AllPending,
}

impl CancelArgs {
    /// The target and the server argument. A lone argument that looks like an address (it has
    /// `:`, `/` or `.`, which prompt ids do not) is the server, so `cancel host:8188` works.
    fn target(&self) -> Result<(Target, Option<&str>), String> {
        let first = self.prompt_id.as_deref();
        let second = self.url.as_deref();
        if self.all_pending {
            return match (first, second) {
                (Some(_), Some(_)) => Err(
                    "--all-pending deletes every pending prompt: give no PROMPT_ID with it"
                        .to_string(),
                ),
                (url, None) => Ok((Target::AllPending, url)),
                (None, url) => Ok((Target::AllPending, url)),
            };
        }
        Ok(match (first, second) {
            (Some(only), None) if looks_like_address(only) => (Target::Running, Some(only)),
            (Some(id), url) => (Target::Prompt(id.to_string()), url),
            (None, url) => (Target::Running, url),
        })
    }
}

fn looks_like_address(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_err() && text.contains([':', '/', '.'])
}

pub async fn run(args: CancelArgs) -> Exit {
    let (target, url) = match args.target() {
        Ok(found) => found,
        Err(message) => {
            fail(message);
            return Exit::NotDone;
        }
    };
    let server = match resolve_server(url) {
        Ok(server) => server,
        Err(message) => {
            fail(message);
            return Exit::NotDone;
        }
    };
    let client = match ComfyClient::new(server) {
        Ok(client) => client,
        Err(e) => {
            fail(e);
            return Exit::NotDone;
        }
    };
    let canceller = Canceller {
        client: &client,
        access: Access::from_read_only(args.read_only),
    };
    match canceller.run(target).await {
        Ok(exit) => exit,
        Err(Stop::Action(refusal @ ActionError::ReadOnly { .. })) => {
            eprintln!("{refusal}");
            Exit::NotDone
        }
        Err(error) => {
            fail(error);
            Exit::NotDone
        }
    }
}

struct Canceller<'a> {
    client: &'a ComfyClient,
    access: Access,
}

/// Why cancelling stopped early; printed as it is.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Action(#[from] ActionError),
}

impl Canceller<'_> {
    fn server(&self) -> &ServerUrl {
        self.client.server()
    }

    async fn run(&self, target: Target) -> Result<Exit, Stop> {
        let snapshot = self.client.queue().await?;
        match target {
            Target::Prompt(id) => self.cancel_prompt(&snapshot, &id).await,
            Target::Running => match snapshot.queue_running.first() {
                Some(item) => self.interrupt(item).await,
                None => {
                    println!(
                        "nothing is running on {}{}",
                        self.server(),
                        pending_note(&snapshot)
                    );
                    Ok(Exit::Failed)
                }
            },
            Target::AllPending => self.delete_all_pending(&snapshot).await,
        }
    }

    async fn cancel_prompt(&self, snapshot: &QueueSnapshot, id: &str) -> Result<Exit, Stop> {
        match locate_in_queue(snapshot, id) {
            Some(Located::Running(item)) => self.interrupt(&item).await,
            Some(Located::Pending { item, .. }) => self.delete(&item).await,
            _ => {
                let shown = clean(id);
                match self.client.history_item(id).await? {
                    Some(entry) => println!(
                        "prompt {shown} is not queued any more: it finished ({}); nothing was \
                         cancelled",
                        history_outcome(id, &entry).label()
                    ),
                    None => println!(
                        "{} has no prompt {shown}, neither queued nor in its history; nothing \
                         was cancelled",
                        self.server()
                    ),
                }
                Ok(Exit::Failed)
            }
        }
    }

    /// A targeted interrupt, then a look at how the prompt ended.
    async fn interrupt(&self, item: &QueueItem) -> Result<Exit, Stop> {
        let id = &item.prompt_id;
        let shown = clean(id);
        let action = Action::Interrupt {
            prompt_id: id.clone(),
        };
        perform(self.client, self.access, &action).await?;
        println!(
            "interrupt sent for running prompt {shown} ({})",
            describe(item)
        );
        let exit = match self.watch_end(id).await? {
            Some(Outcome::Interrupted { node_id, node_type }) => {
                let node = match (node_id, node_type) {
                    (Some(id), Some(kind)) => format!(" in node [{}] {}", clean(&id), clean(&kind)),
                    (Some(id), None) => format!(" in node [{}]", clean(&id)),
                    _ => String::new(),
                };
                println!("interrupted prompt {shown}{node}");
                Exit::Success
            }
            Some(other) => {
                println!(
                    "prompt {shown} ended ({}) before the interrupt took effect; nothing was \
                     interrupted",
                    other.label()
                );
                Exit::Failed
            }
            None => {
                println!(
                    "prompt {shown} still runs after {} s: the server stops it at its node's \
                     next check",
                    INTERRUPT_WATCH.as_secs()
                );
                Exit::Success
            }
        };
        Ok(exit)
    }

    /// Watches an interrupted prompt until it leaves the queue; `None` if it is still there.
    async fn watch_end(&self, id: &str) -> Result<Option<Outcome>, HttpError> {
        let deadline = Instant::now() + INTERRUPT_WATCH;
        loop {
            match locate(self.client, id).await? {
                Located::Finished(entry) => return Ok(Some(history_outcome(id, &entry))),
                Located::Unknown => return Ok(Some(Outcome::Unknown)),
                Located::Running(_) | Located::Pending { .. } => {}
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes one pending prompt; if it started meanwhile, interrupts it instead.
    async fn delete(&self, item: &QueueItem) -> Result<Exit, Stop> {
        let id = &item.prompt_id;
        let shown = clean(id);
        let Some(action) = Action::cancel(id, Place::Pending) else {
            return Ok(Exit::Failed);
        };
        perform(self.client, self.access, &action).await?;
        Ok(match locate(self.client, id).await? {
            Located::Unknown => {
                println!("deleted pending prompt {shown} ({})", describe(item));
                Exit::Success
            }
            Located::Pending { .. } => {
                println!("prompt {shown} is still pending: the server did not delete it");
                Exit::Failed
            }
            Located::Running(item) => {
                println!("prompt {shown} started before the delete arrived");
                return self.interrupt(&item).await;
            }
            Located::Finished(entry) => {
                println!(
                    "prompt {shown} ran and finished ({}) before the delete arrived; nothing was \
                     deleted",
                    history_outcome(id, &entry).label()
                );
                Exit::Failed
            }
        })
    }

    /// Deletes exactly the pending prompts of `snapshot`; prompts queued since are left alone.
    async fn delete_all_pending(&self, snapshot: &QueueSnapshot) -> Result<Exit, Stop> {
        let items = snapshot.pending_in_run_order();
        let action = Action::ClearPending {
            prompt_ids: items.iter().map(|i| i.prompt_id.clone()).collect(),
        };
        self.access.check(&action)?;
        if items.is_empty() {
            println!(
                "{} has no pending prompts; nothing was deleted",
                self.server()
            );
            return Ok(Exit::Failed);
        }
        perform(self.client, self.access, &action).await?;
        let after = self.client.queue().await?;
        let mut deleted = Vec::new();
        let mut lines = Vec::new();
        for item in &items {
            let shown = clean(&item.prompt_id);
            match Place::in_queue(&after, &item.prompt_id) {
                Place::NotQueued => deleted.push(*item),
                Place::Running => lines.push(format!(
                    "prompt {shown} started before the delete arrived and still runs"
                )),
                Place::Pending => lines.push(format!(
                    "prompt {shown} is still pending: the server did not delete it"
                )),
            }
        }
        let mut by_owner: BTreeMap<String, usize> = BTreeMap::new();
        for item in &deleted {
            *by_owner
                .entry(owner_label(item.client_id(), None))
                .or_default() += 1;
        }
        let owners: Vec<String> = by_owner
            .iter()
            .map(|(owner, n)| format!("{n} from {owner}"))
            .collect();
        println!(
            "deleted {} pending prompt{}{}",
            deleted.len(),
            if deleted.len() == 1 { "" } else { "s" },
            if owners.is_empty() {
                String::new()
            } else {
                format!(": {}", owners.join(", "))
            }
        );
        for item in &deleted {
            println!("  {}  {}", clean(&item.prompt_id), describe(item));
        }
        for line in lines {
            println!("{line}");
        }
        let newer = after
            .queue_pending
            .iter()
            .filter(|p| !items.iter().any(|i| i.prompt_id == p.prompt_id))
            .count();
        if newer > 0 {
            println!(
                "{newer} prompt{} queued since {} left alone",
                if newer == 1 { "" } else { "s" },
                if newer == 1 { "was" } else { "were" }
            );
        }
        Ok(if deleted.is_empty() {
            Exit::Failed
        } else {
            Exit::Success
        })
    }
}

/// `queued by client 1a2b3c4d, SaveImage`.
fn describe(item: &QueueItem) -> String {
    let owner = owner_label(item.client_id(), None);
    let classes = output_classes(item);
    if classes.is_empty() {
        format!("queued by {owner}")
    } else {
        format!("queued by {owner}, {}", classes.join(", "))
    }
}

fn pending_note(snapshot: &QueueSnapshot) -> String {
    match snapshot.queue_pending.len() {
        0 => String::new(),
        1 => "; 1 prompt is pending (comfytop cancel PROMPT_ID deletes it)".to_string(),
        n => format!("; {n} prompts are pending (comfytop cancel --all-pending deletes them)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CancelArgs,
    }

    fn target(args: &[&str]) -> Result<(Target, Option<String>), String> {
        let cli = Cli::try_parse_from(std::iter::once("cancel").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args
            .target()
            .map(|(t, url)| (t, url.map(str::to_string)))
    }

    #[test]
    fn a_lone_argument_is_an_id_unless_it_looks_like_an_address() {
        let id = "56840cbe-8f7a-4835-b679-5f4ad356202e";
        assert_eq!(target(&[id]), Ok((Target::Prompt(id.into()), None)));
        assert_eq!(
            target(&[id, "box:8188"]),
            Ok((Target::Prompt(id.into()), Some("box:8188".into())))
        );
        assert_eq!(
            target(&["http://box:8188"]),
            Ok((Target::Running, Some("http://box:8188".into())))
        );
        assert_eq!(target(&[]), Ok((Target::Running, None)));
        assert_eq!(
            target(&["--all-pending", "box:8188"]),
            Ok((Target::AllPending, Some("box:8188".into())))
        );
        assert!(target(&["--all-pending", id, "box:8188"]).is_err());
    }
}
