//! The prompt queue and the history, as ComfyUI keeps them: a binary min-heap on
//! `(number, prompt_id)` handled with Python's `heapq` algorithms (so `GET /queue` lists pending
//! items in the same heap order the real server shows), one running item, and the history in
//! completion order with at most 10000 entries.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::Value;

use comfy_client::api::{History, HistoryEntry, QueueItem, QueueSnapshot};
use comfy_client::protocol::{NodeId, PromptId};

/// History entries kept before the oldest is dropped (ComfyUI's `MAXIMUM_HISTORY_SIZE`).
pub(crate) const MAX_HISTORY: usize = 10_000;

/// A queued graph, shared by the queue, the worker and the history: a request of tens of
/// megabytes is held once, and `GET /queue` or `/history` only borrows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SharedGraph(pub Arc<Value>);

impl Deref for SharedGraph {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl Serialize for SharedGraph {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A queue item as the server keeps it: the whole graph, shared.
pub(crate) type SimItem = QueueItem<SharedGraph>;
pub(crate) type SimHistoryEntry = HistoryEntry<SimItem>;

/// A queued prompt: the item as `GET /queue` shows it, plus what only the worker sees.
#[derive(Debug)]
pub(crate) struct Pending {
    pub item: SimItem,
    pub order: KeyOrder,
}

/// The order of the workflow's nodes and of each node's inputs, as the client wrote them.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyOrder {
    pub nodes: Vec<NodeId>,
    pub inputs: HashMap<NodeId, Vec<String>>,
}

/// What a `POST /queue {"delete": [id]}` did, which decides how many `status` messages follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    Nothing,
    /// One item removed from a longer queue: one `status`.
    One,
    /// The last item removed through a wipe: two `status` messages, as ComfyUI sends.
    Last,
}

/// Flags `POST /free` leaves for the worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FreeFlags {
    pub unload_models: bool,
    pub free_memory: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PromptQueue {
    heap: Vec<Arc<Pending>>,
    running: Option<Arc<Pending>>,
    history: Vec<(PromptId, SimHistoryEntry)>,
    counter: u64,
    pub free: Option<FreeFlags>,
}

impl PromptQueue {
    /// The number for the next `POST /prompt` (every POST takes one, rejected ones too).
    pub(crate) fn take_number(&mut self, front: bool) -> f64 {
        let n = self.counter as f64;
        self.counter += 1;
        // Python's `-0` is plain 0; a float -0.0 would sort before it.
        if front && n > 0.0 { -n } else { n }
    }

    pub(crate) fn push(&mut self, pending: Pending) {
        self.heap.push(Arc::new(pending));
        let last = self.heap.len() - 1;
        sift_down(&mut self.heap, 0, last);
    }

    /// Takes the item that runs next and marks it running.
    pub(crate) fn start_next(&mut self) -> Option<Arc<Pending>> {
        let next = heap_pop(&mut self.heap)?;
        self.running = Some(next.clone());
        Some(next)
    }

    /// Pending plus running, as `status` reports it.
    pub(crate) fn remaining(&self) -> u64 {
        (self.heap.len() + usize::from(self.running.is_some())) as u64
    }

    pub(crate) fn is_running(&self, prompt_id: &str) -> bool {
        self.running
            .as_ref()
            .is_some_and(|p| p.item.prompt_id == prompt_id)
    }

    /// `GET /queue`, borrowing the items rather than copying their graphs.
    pub(crate) fn snapshot(&self) -> QueueSnapshot<&SimItem> {
        QueueSnapshot {
            queue_running: self.running.iter().map(|p| &p.item).collect(),
            queue_pending: self.heap.iter().map(|p| &p.item).collect(),
        }
    }

    pub(crate) fn delete(&mut self, prompt_id: &str) -> Deleted {
        let Some(index) = self.heap.iter().position(|p| p.item.prompt_id == prompt_id) else {
            return Deleted::Nothing;
        };
        if self.heap.len() == 1 {
            self.heap.clear();
            return Deleted::Last;
        }
        self.heap.remove(index);
        heapify(&mut self.heap);
        Deleted::One
    }

    pub(crate) fn wipe(&mut self) {
        self.heap.clear();
    }

    /// Moves the running item into the history. A reused prompt id keeps its old place, as a
    /// Python dict does.
    pub(crate) fn finish(&mut self, entry: SimHistoryEntry) {
        self.running = None;
        let id = entry.prompt.prompt_id.clone();
        if self.history.len() > MAX_HISTORY {
            self.history.remove(0);
        }
        match self.history.iter_mut().find(|(k, _)| *k == id) {
            Some(slot) => slot.1 = entry,
            None => self.history.push((id, entry)),
        }
    }

    /// `GET /history?max_items=&offset=`, with ComfyUI's paging rules: `max_items` alone gives
    /// the newest N, `offset` counts from the oldest.
    pub(crate) fn history_page(
        &self,
        max_items: Option<i64>,
        offset: Option<i64>,
    ) -> History<&SimHistoryEntry> {
        let len = self.history.len() as i64;
        let mut offset = offset.unwrap_or(-1);
        if offset < 0
            && let Some(max) = max_items
        {
            offset = len - max;
        }
        let mut out = Vec::new();
        for (i, (id, entry)) in self.history.iter().enumerate() {
            if i as i64 >= offset {
                out.push((id.clone(), entry));
                if max_items.is_some_and(|max| out.len() as i64 >= max) {
                    break;
                }
            }
        }
        History(out)
    }

    pub(crate) fn history_entry(&self, prompt_id: &str) -> History<&SimHistoryEntry> {
        History(
            self.history
                .iter()
                .filter(|(id, _)| id == prompt_id)
                .map(|(id, e)| (id.clone(), e))
                .collect(),
        )
    }

    pub(crate) fn delete_history(&mut self, prompt_id: &str) {
        self.history.retain(|(id, _)| id != prompt_id);
    }

    pub(crate) fn wipe_history(&mut self) {
        self.history.clear();
    }
}

/// Python compares queue tuples item by item: number first, then prompt id.
fn less(a: &Pending, b: &Pending) -> bool {
    match a.item.number.total_cmp(&b.item.number) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => a.item.prompt_id < b.item.prompt_id,
    }
}

// The three helpers below are `heapq._siftdown`, `heapq._siftup` and `heapq.heapify`, written
// with swaps; they leave items in the same places as Python's versions.

fn sift_down(heap: &mut [Arc<Pending>], start: usize, mut pos: usize) {
    while pos > start {
        let parent = (pos - 1) / 2;
        if less(&heap[pos], &heap[parent]) {
            heap.swap(pos, parent);
            pos = parent;
        } else {
            break;
        }
    }
}

fn sift_up(heap: &mut [Arc<Pending>], mut pos: usize) {
    let end = heap.len();
    let start = pos;
    let mut child = 2 * pos + 1;
    while child < end {
        let right = child + 1;
        if right < end && !less(&heap[child], &heap[right]) {
            child = right;
        }
        heap.swap(pos, child);
        pos = child;
        child = 2 * pos + 1;
    }
    sift_down(heap, start, pos);
}

fn heapify(heap: &mut [Arc<Pending>]) {
    for i in (0..heap.len() / 2).rev() {
        sift_up(heap, i);
    }
}

fn heap_pop(heap: &mut Vec<Arc<Pending>>) -> Option<Arc<Pending>> {
    let last = heap.pop()?;
    if heap.is_empty() {
        return Some(last);
    }
    let top = std::mem::replace(&mut heap[0], last);
    sift_up(heap, 0);
    Some(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(number: f64, id: &str) -> Pending {
        Pending {
            item: QueueItem {
                number,
                prompt_id: id.into(),
                prompt: SharedGraph(Arc::new(Value::Null)),
                extra_data: Default::default(),
                outputs_to_execute: vec![],
            },
            order: KeyOrder::default(),
        }
    }

    fn pending_numbers(q: &PromptQueue) -> Vec<f64> {
        q.snapshot()
            .queue_pending
            .iter()
            .map(|i| i.number)
            .collect()
    }

    #[test]
    fn heap_order_matches_the_recorded_queue() {
        // Recorded: 5 runs, 6 and 7 queued, then 8 with front → pending shown as [-8, 7, 6].
        let mut q = PromptQueue::default();
        for (front, id) in [(false, "p1"), (false, "p2"), (false, "p3")] {
            let n = q.take_number(front);
            q.push(pending(n + 5.0, id));
        }
        assert_eq!(q.start_next().unwrap().item.prompt_id, "p1");
        q.push(pending(-8.0, "p4"));
        assert_eq!(pending_numbers(&q), [-8.0, 7.0, 6.0]);
        assert_eq!(q.delete("p3"), Deleted::One);
        assert_eq!(pending_numbers(&q), [-8.0, 6.0]);
        assert_eq!(q.remaining(), 3);
        assert_eq!(q.start_next().unwrap().item.prompt_id, "p4");
        assert_eq!(q.start_next().unwrap().item.prompt_id, "p2");
        assert!(q.start_next().is_none());
    }

    #[test]
    fn deleting_the_last_item_is_a_wipe() {
        let mut q = PromptQueue::default();
        q.push(pending(0.0, "a"));
        assert_eq!(q.delete("zzz"), Deleted::Nothing);
        assert_eq!(q.delete("a"), Deleted::Last);
        assert_eq!(q.remaining(), 0);
    }

    #[test]
    fn history_paging_follows_comfyui() {
        let mut q = PromptQueue::default();
        for id in ["a", "b", "c", "d"] {
            q.push(pending(0.0, id));
            let p = q.start_next().unwrap();
            q.finish(HistoryEntry {
                prompt: p.item.clone(),
                outputs: Default::default(),
                status: None,
                meta: Default::default(),
            });
        }
        let ids =
            |h: History<&SimHistoryEntry>| h.0.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(ids(q.history_page(None, None)), ["a", "b", "c", "d"]);
        assert_eq!(ids(q.history_page(Some(2), None)), ["c", "d"]);
        assert_eq!(ids(q.history_page(Some(2), Some(1))), ["b", "c"]);
        assert_eq!(ids(q.history_page(None, Some(3))), ["d"]);
        assert!(q.history_page(Some(0), None).is_empty());
        assert_eq!(ids(q.history_entry("b")), ["b"]);
        assert!(q.history_entry("zz").is_empty());
        q.delete_history("b");
        assert_eq!(ids(q.history_page(None, None)), ["a", "c", "d"]);
    }
}
