//! Output images fetched through `/view`, kept within a byte budget, least recently used out
//! first.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use bytes::Bytes;
use url::Url;

use crate::comfy::protocol::ImageRef;
use crate::comfy::server_url::ServerUrl;

/// The `/view` URL of an output image.
pub fn view_url(server: &ServerUrl, image: &ImageRef) -> Url {
    let mut url = server.http("view");
    url.query_pairs_mut()
        .append_pair("filename", &image.filename)
        .append_pair("subfolder", &image.subfolder)
        .append_pair("type", &image.folder);
    url
}

/// Encoded image bytes by key, at most `capacity` bytes in all. An image larger than the whole
/// budget is not kept.
#[derive(Debug)]
pub struct ImageCache<K = ImageRef> {
    capacity: usize,
    used: usize,
    tick: u64,
    entries: HashMap<K, (Bytes, u64)>,
    /// Last use → key, oldest first.
    by_use: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone> ImageCache<K> {
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            capacity: capacity_bytes,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// The bytes for `key`, marking them as just used.
    pub fn get(&mut self, key: &K) -> Option<Bytes> {
        let tick = self.next_tick();
        let (bytes, last) = self.entries.get_mut(key)?;
        self.by_use.remove(last);
        *last = tick;
        self.by_use.insert(tick, key.clone());
        Some(bytes.clone())
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Stores `bytes` for `key`, evicting the least recently used entries to make room. Returns
    /// whether it was stored (not when larger than the whole budget).
    pub fn insert(&mut self, key: K, bytes: Bytes) -> bool {
        self.remove(&key);
        if bytes.len() > self.capacity {
            return false;
        }
        while self.used + bytes.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = self.entries.remove(&oldest) {
                self.used -= evicted.len();
            }
        }
        let tick = self.next_tick();
        self.used += bytes.len();
        self.by_use.insert(tick, key.clone());
        self.entries.insert(key, (bytes, tick));
        true
    }

    pub fn remove(&mut self, key: &K) -> Option<Bytes> {
        let (bytes, tick) = self.entries.remove(key)?;
        self.by_use.remove(&tick);
        self.used -= bytes.len();
        Some(bytes)
    }

    pub fn used_bytes(&self) -> usize {
        self.used
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn evicts_the_least_recently_used_first() {
        let mut cache = ImageCache::new(300);
        assert!(cache.insert("a", bytes(100)));
        assert!(cache.insert("b", bytes(100)));
        assert!(cache.insert("c", bytes(100)));
        // Touch "a": "b" is now the oldest.
        assert!(cache.get(&"a").is_some());
        assert!(cache.insert("d", bytes(100)));
        assert!(cache.contains(&"a"));
        assert!(!cache.contains(&"b"));
        assert!(cache.contains(&"c") && cache.contains(&"d"));
        assert_eq!(cache.used_bytes(), 300);
    }

    #[test]
    fn a_big_entry_pushes_out_as_many_as_needed() {
        let mut cache = ImageCache::new(300);
        for key in ["a", "b", "c"] {
            cache.insert(key, bytes(100));
        }
        assert!(cache.insert("big", bytes(250)));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.used_bytes(), 250);
    }

    #[test]
    fn an_entry_over_the_budget_is_not_kept() {
        let mut cache = ImageCache::new(100);
        cache.insert("a", bytes(50));
        assert!(!cache.insert("huge", bytes(101)));
        assert!(cache.contains(&"a"));
        assert_eq!(cache.used_bytes(), 50);
    }

    #[test]
    fn replacing_a_key_counts_its_bytes_once() {
        let mut cache = ImageCache::new(100);
        cache.insert("a", bytes(60));
        cache.insert("a", bytes(70));
        assert_eq!(cache.used_bytes(), 70);
        assert_eq!(cache.get(&"a").map(|b| b.len()), Some(70));
        assert_eq!(cache.remove(&"a").map(|b| b.len()), Some(70));
        assert_eq!(cache.used_bytes(), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn view_url_carries_the_image_reference() {
        let server = ServerUrl::parse("http://127.0.0.1:8188/prefix").unwrap();
        let image = ImageRef {
            filename: "full 00002_.png".into(),
            subfolder: "lab".into(),
            folder: "output".into(),
        };
        assert_eq!(
            view_url(&server, &image).as_str(),
            "http://127.0.0.1:8188/prefix/view?filename=full+00002_.png&subfolder=lab&type=output"
        );
    }
}
