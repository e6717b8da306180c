//! Random histories checked against a naive model that keeps a full map per revision.

use std::collections::BTreeMap;

use super::*;

/// Keys chosen to stress the encoding: 0x00 and 0xFF bytes, prefixes of one another.
const KEYS: [&[u8]; 9] =
    [&[0], &[0, 0], &[0, 0xFF], &[1], b"a", b"a\0", b"ab", &[0xFF], &[0xFF, 0xFF]];

/// A small deterministic generator (xorshift64), so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }

    fn key(&mut self) -> Vec<u8> {
        KEYS[self.below(KEYS.len())].to_vec()
    }

    /// A range end: the single key, from-key, or another key (possibly before `key`).
    fn range_end(&mut self) -> Vec<u8> {
        match self.below(4) {
            0 => vec![],
            1 => vec![0],
            _ => self.key(),
        }
    }
}

type State = BTreeMap<Vec<u8>, KeyValue>;

/// `states[r]` is the store at revision `r` (index 0 unused).
struct Model {
    states: Vec<State>,
    compacted: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
        match end {
            [] => key == start,
            [0] => key >= start,
            _ => key >= start && key < end,
        }
    }

    fn range(&self, start: &[u8], end: &[u8], revision: i64) -> Result<Vec<KeyValue>, MvccError> {
        if revision > self.current() {
            return Err(MvccError::FutureRevision);
        }
        let at = if revision > 0 { revision } else { self.current() };
        if at < self.compacted {
            return Err(MvccError::Compacted);
        }
        let state = &self.states[at as usize];
        Ok(state.values().filter(|kv| Model::in_range(&kv.key, start, end)).cloned().collect())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        let mut state = self.states.last().unwrap().clone();
        let revision = self.current() + 1;
        let kv = match state.get(key) {
            Some(old) => KeyValue {
                mod_revision: revision,
                version: old.version + 1,
                value: value.to_vec(),
                ..old.clone()
            },
            None => KeyValue {
                key: key.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                value: value.to_vec(),
                lease: 0,
            },
        };
        state.insert(key.to_vec(), kv);
        self.states.push(state);
    }

    fn delete(&mut self, start: &[u8], end: &[u8]) -> i64 {
        let mut state = self.states.last().unwrap().clone();
        state.retain(|key, _| !Model::in_range(key, start, end));
        let deleted = self.states.last().unwrap().len() - state.len();
        if deleted > 0 {
            self.states.push(state);
        }
        deleted as i64
    }
}

fn check_reads(store: &TestStore, model: &Model, rng: &mut Rng) {
    for _ in 0..4 {
        let (key, range_end) = (rng.key(), rng.range_end());
        let revision = match rng.below(3) {
            0 => 0,
            _ => rng.below(model.current() as usize + 2) as i64,
        };
        let req = RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            revision,
            ..Default::default()
        };
        let got = store.range(&req).map(|response| {
            assert_eq!(response.count as usize, response.kvs.len());
            response.kvs
        });
        assert_eq!(got, model.range(&key, &range_end, revision), "{req:?}");
    }
}

fn run(seed: u64) {
    let store = TestStore::new();
    let mut model = Model { states: vec![State::new(), State::new()], compacted: 0 };
    let mut rng = Rng(seed);
    for step in 0..400 {
        match rng.below(10) {
            0..=5 => {
                let (key, value) = (rng.key(), step.to_string().into_bytes());
                let req =
                    PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
                store.write(WriteRequest::Put(req)).unwrap();
                model.put(&key, &value);
            }
            6..=8 => {
                let (key, range_end) = (rng.key(), rng.range_end());
                let req = DeleteRangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    prev_kv: false,
                };
                let (response, _) = store.write(WriteRequest::DeleteRange(req)).unwrap();
                let WriteResponse::DeleteRange(response) = response else { panic!() };
                assert_eq!(
                    response.deleted,
                    model.delete(&key, &range_end),
                    "seed {seed} step {step}"
                );
            }
            _ => {
                let revision = model.compacted
                    + rng.below((model.current() - model.compacted) as usize + 1) as i64;
                let expected = if revision <= model.compacted {
                    Err(MvccError::Compacted)
                } else {
                    Ok(model.current())
                };
                assert_eq!(store.compact(revision), expected, "seed {seed} step {step}");
                model.compacted = model.compacted.max(revision);
            }
        }
        assert_eq!(store.current(), model.current(), "seed {seed} step {step}");
        check_reads(&store, &model, &mut rng);
    }
}

#[test]
fn random_histories_match_the_model() {
    for seed in [1, 2, 3, 0x5EED, 0xDEAD_BEEF] {
        run(seed);
    }
}
