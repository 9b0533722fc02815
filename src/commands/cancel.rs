//! `comfytop cancel [PROMPT_ID | --all-pending] [URL]`: stop one prompt, whichever way it takes
//! (a targeted interrupt if it runs, a delete if it waits), or delete every pending prompt. It
//! asks nothing, so it reads the queue first, hits exactly what it found, then checks and says
//! what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;

use crate::comfy::api::{HistoryEntry, QueueItem, QueueSnapshot};
use crate::comfy::http::{ComfyClient, HttpError};
use crate::comfy::server_url::ServerUrl;
use crate::control::{
    Access, ActionError, Located, Place, PrefixError, ServerAction, history_outcome, locate,
    locate_in_queue, output_classes, owner_label, perform, resolve_prefix,
};
use crate::tracker::Outcome;

use super::{Exit, clean, fail};
use crate::config::Config;

/// How long to watch an interrupted prompt for its end before reporting that it still runs.
const INTERRUPT_WATCH: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Args)]
#[command(after_help = format!(
    "A lone argument with `:`, `/` or `.` in it is the server: `comfytop cancel gpu-box:8188` \
     interrupts what runs there. PROMPT_ID may be any unique beginning of an id, like the 8 \
     characters `queue` shows. Nothing is asked; what was hit is printed.\n\n{}",
    super::EXIT_STATUS_HELP
))]
pub struct CancelArgs {
    /// The prompt to cancel: interrupted if it runs, deleted if it waits
    /// [default: the prompt running now]
    #[arg(value_name = "PROMPT_ID")]
    pub prompt_id: Option<String>,

    /// ComfyUI server: a URL, or a name from the config (gpu1 or @gpu1) [default:
    /// $COMFYUI_URL, else the config's default, else http://127.0.0.1:8188]
    #[arg(value_name = "URL|NAME")]
    pub url: Option<String>,

    #[command(flatten)]
    pub connection: crate::cli::ConnectionArgs,

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

impl Target {
    /// The kind of action cancelling this target takes, for the read-only refusal.
    fn action_kind(&self) -> ServerAction {
        match self {
            Self::Prompt(id) => ServerAction::Delete {
                prompt_ids: vec![id.clone()],
            },
            Self::Running => ServerAction::Interrupt {
                prompt_id: String::new(),
            },
            Self::AllPending => ServerAction::ClearPending {
                prompt_ids: Vec::new(),
            },
        }
    }
}

impl CancelArgs {
    /// The target and the server argument. A lone argument that looks like an address (it has
    /// `:`, `/` or `.`, which prompt ids do not) is the server, so `cancel host:8188` works.
    /// What to cancel and on which server. A lone argument is the server when it looks like an
    /// address, starts with `@` or is a name `is_server_name` knows; else a prompt id.
    fn target(
        &self,
        is_server_name: impl Fn(&str) -> bool,
    ) -> Result<(Target, Option<&str>), String> {
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
            (Some(only), None) if looks_like_address(only) || is_server_name(only) => {
                (Target::Running, Some(only))
            }
            (Some(id), url) => (Target::Prompt(id.to_string()), url),
            (None, url) => (Target::Running, url),
        })
    }
}

fn looks_like_address(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_err()
        && (text.starts_with('@') || text.contains([':', '/', '.']))
}

pub async fn run(args: CancelArgs, config: &Config) -> Exit {
    let (target, url) = match args.target(|name| config.servers.contains_key(name)) {
        Ok(found) => found,
        Err(message) => {
            fail(message);
            return Exit::Usage;
        }
    };
    let (server, read_only) = match crate::cli::target(url, &args.connection, config) {
        Ok(server) => (server.server.clone(), server.read_only()),
        Err(message) => {
            fail(message);
            return Exit::Usage;
        }
    };
    let access = Access::from_read_only(args.read_only || read_only);
    // Refused before the queue is read: whatever is there, nothing would be cancelled.
    if let Err(refusal) = access.check(&target.action_kind()) {
        eprintln!("{refusal}");
        return Exit::NotDone;
    }
    let client = match ComfyClient::new(server) {
        Ok(client) => client,
        Err(e) => {
            fail(e);
            return Exit::NotDone;
        }
    };
    let canceller = Canceller {
        client: &client,
        access,
    };
    match canceller.run(target).await {
        Ok(exit) => exit,
        Err(Stop::ServerAction(refusal @ ActionError::ReadOnly { .. })) => {
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
    ServerAction(#[from] ActionError),
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
        if let Some(found) = locate_in_queue(snapshot, id) {
            return self.cancel_located(found).await;
        }
        if let Some(entry) = self.client.history_item(id).await? {
            return Ok(self.already_finished(id, &entry));
        }
        if uuid::Uuid::parse_str(id).is_ok() {
            // A whole id the server does not know: no need to look for ids it begins.
            return Ok(self.no_such_prompt(id));
        }
        // Not a whole id: the beginning of one, as the dashboard and `queue` show them.
        let history = self.client.history(None, None).await?;
        let queued = snapshot
            .queue_running
            .iter()
            .chain(&snapshot.queue_pending)
            .map(|item| item.prompt_id.as_str());
        let finished = history.0.iter().map(|(id, _)| id.as_str());
        match resolve_prefix(id, queued.chain(finished)) {
            Ok(full) => match locate_in_queue(snapshot, &full) {
                Some(found) => self.cancel_located(found).await,
                None => Ok(match history.0.iter().find(|(h, _)| *h == full) {
                    Some((_, entry)) => self.already_finished(&full, entry),
                    None => self.no_such_prompt(id),
                }),
            },
            Err(PrefixError::NoMatch) => Ok(self.no_such_prompt(id)),
            Err(PrefixError::Ambiguous(candidates)) => {
                let mut lines = vec![format!(
                    "{} prompts on {} begin with {}; give more of the id. Nothing was cancelled:",
                    candidates.len(),
                    self.server(),
                    clean(id)
                )];
                for candidate in &candidates {
                    let place = match Place::in_queue(snapshot, candidate) {
                        Place::Running => "running",
                        Place::Pending => "pending",
                        Place::NotQueued => "finished",
                    };
                    lines.push(format!("  {}  {place}", clean(candidate)));
                }
                fail(lines.join("\n"));
                Ok(Exit::Usage)
            }
        }
    }

    async fn cancel_located(&self, found: Located) -> Result<Exit, Stop> {
        match found {
            Located::Running(item) => self.interrupt(&item).await,
            Located::Pending { item, .. } => self.delete(&item).await,
            Located::Finished(entry) => Ok(self.already_finished(&entry.prompt.prompt_id, &entry)),
            Located::Unknown => Ok(Exit::Failed),
        }
    }

    fn already_finished(&self, id: &str, entry: &HistoryEntry) -> Exit {
        println!(
            "prompt {} is not queued any more: it finished ({}); nothing was cancelled",
            clean(id),
            history_outcome(id, entry).label()
        );
        Exit::Failed
    }

    fn no_such_prompt(&self, id: &str) -> Exit {
        println!(
            "{} has no prompt {}, neither queued nor in its history; nothing was cancelled",
            self.server(),
            clean(id)
        );
        Exit::Failed
    }

    /// A targeted interrupt, then a look at how the prompt ended.
    async fn interrupt(&self, item: &QueueItem) -> Result<Exit, Stop> {
        let id = &item.prompt_id;
        let shown = clean(id);
        let action = ServerAction::Interrupt {
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
        let Some(action) = ServerAction::cancel(id, Place::Pending) else {
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
        let action = ServerAction::ClearPending {
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
            .target(|name| name == "gpu1")
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
        for server in ["@gpu1", "gpu1", "@gpu9"] {
            assert_eq!(
                target(&[server]),
                Ok((Target::Running, Some(server.into())))
            );
        }
        assert_eq!(target(&["gpu9"]), Ok((Target::Prompt("gpu9".into()), None)));
        assert_eq!(
            target(&["--all-pending", "box:8188"]),
            Ok((Target::AllPending, Some("box:8188".into())))
        );
        assert!(target(&["--all-pending", id, "box:8188"]).is_err());
    }
}
