//! Property: replicas that edit one visit concurrently — the same fields, keyed list
//! additions, tombstone deletions — and exchange their changes in any order, duplicated
//! and reordered, all end identical, and every edit that no later edit superseded is
//! either the visible value or one of the values of a listed conflict.

use std::collections::HashSet;

use automerge::{ActorId, Change, ChangeHash, ReadDoc};
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::{Post, RecordKind, Visit};
use proptest::prelude::*;
use serde_json::Value as Json;

#[derive(Debug, Clone)]
enum Op {
    Notes {
        replica: usize,
        value: u8,
    },
    EmergencyPlan {
        replica: usize,
        value: bool,
    },
    AddPost {
        replica: usize,
        slot: u8,
    },
    PostWorkers {
        replica: usize,
        slot: u8,
        value: u8,
    },
    DeletePost {
        replica: usize,
        slot: u8,
    },
    /// Deliver some of `from`'s changes to `to`, in a shuffled order, some twice.
    Deliver {
        from: usize,
        to: usize,
        pick: Vec<bool>,
        seed: u64,
    },
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    let r = 0..replicas;
    prop_oneof![
        (r.clone(), 0u8..3).prop_map(|(replica, value)| Op::Notes { replica, value }),
        (r.clone(), any::<bool>()).prop_map(|(replica, value)| Op::EmergencyPlan { replica, value }),
        (r.clone(), 0u8..4).prop_map(|(replica, slot)| Op::AddPost { replica, slot }),
        (r.clone(), 0u8..4, 0u8..3).prop_map(|(replica, slot, value)| Op::PostWorkers { replica, slot, value }),
        (r.clone(), 0u8..4).prop_map(|(replica, slot)| Op::DeletePost { replica, slot }),
        (r.clone(), r, proptest::collection::vec(any::<bool>(), 16), any::<u64>())
            .prop_map(|(from, to, pick, seed)| Op::Deliver { from, to, pick, seed }),
    ]
}

/// An edit that was made: where, what, which change carried it, and which earlier edits
/// of the same field its author had already seen (those it supersedes).
struct Edit {
    path: Vec<String>,
    value: Json,
    hash: ChangeHash,
    supersedes: Vec<ChangeHash>,
}

struct Replica {
    doc: Document,
    actor: ActorId,
    author: Author,
}

fn post_id(slot: u8) -> String {
    format!("{:032x}", slot as u128 + 1)
}

fn get_path<'a>(json: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(json, |j, seg| j.get(seg))
}

fn edit(replica: &mut Replica, edits: &mut Vec<Edit>, path: Vec<&str>, f: impl FnOnce(&mut Visit)) {
    let old: Visit = replica.doc.read().unwrap();
    let mut new = old.clone();
    f(&mut new);
    let change = replica.doc.write_diff(&replica.actor, &replica.author, &to_json(&old), &to_json(&new)).unwrap();
    let Some(change) = change else { return };
    let path: Vec<String> = path.into_iter().map(str::to_string).collect();
    let value = get_path(&to_json(&new), &path).cloned().unwrap();
    let supersedes = edits
        .iter()
        .filter(|e| e.path == path && replica.doc.automerge().get_change_by_hash(&e.hash).is_some())
        .map(|e| e.hash)
        .collect();
    edits.push(Edit { path, value, hash: change.hash(), supersedes });
}

fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

fn run(replicas: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let base = Document::genesis(RecordKind::Visit, "00000000000000000000000000000abc");
    let mut rs: Vec<Replica> = (0..replicas)
        .map(|i| Replica {
            doc: base.clone(),
            actor: ActorId::random(),
            author: Author { user: format!("u{i}"), device: format!("d{i}") },
        })
        .collect();
    let mut edits = Vec::new();
    for op in ops {
        match op {
            Op::Notes { replica, value } => {
                edit(&mut rs[replica], &mut edits, vec!["notes"], |v| v.notes = format!("note {value}"))
            }
            Op::EmergencyPlan { replica, value } => {
                edit(&mut rs[replica], &mut edits, vec!["management_system", "emergency_plan"], |v| {
                    v.management_system.emergency_plan = Some(value)
                })
            }
            Op::AddPost { replica, slot } => {
                let id = post_id(slot) + &replica.to_string();
                let id = id[id.len() - 32..].to_string();
                edit(&mut rs[replica], &mut edits, vec!["hazard_identification", "posts", &id, "name"], |v| {
                    v.hazard_identification
                        .posts
                        .entry(id.clone())
                        .or_insert_with(|| Post { name: format!("post {slot}"), ..Default::default() });
                })
            }
            Op::PostWorkers { replica, slot, value } => {
                let visit: Visit = rs[replica].doc.read().unwrap();
                let Some(id) = visit.hazard_identification.posts.keys().nth(slot as usize).cloned() else { continue };
                edit(
                    &mut rs[replica],
                    &mut edits,
                    vec!["hazard_identification", "posts", &id, "exposed_workers"],
                    |v| v.hazard_identification.posts.get_mut(&id).unwrap().exposed_workers = value as i64,
                )
            }
            Op::DeletePost { replica, slot } => {
                let visit: Visit = rs[replica].doc.read().unwrap();
                let Some(id) = visit.hazard_identification.posts.keys().nth(slot as usize).cloned() else { continue };
                edit(&mut rs[replica], &mut edits, vec!["hazard_identification", "posts", &id, "deleted"], |v| {
                    v.hazard_identification.posts.get_mut(&id).unwrap().deleted = true
                })
            }
            Op::Deliver { from, to, pick, seed } => {
                if from == to {
                    continue;
                }
                let all: Vec<Change> = rs[from].doc.changes_since(&[]);
                let mut chosen: Vec<Change> = Vec::new();
                for (i, c) in all.iter().enumerate() {
                    let p = pick[i % pick.len()];
                    if p {
                        chosen.push(c.clone());
                    }
                    if p && i % 3 == 0 {
                        chosen.push(c.clone()); // duplicated message
                    }
                }
                shuffle(&mut chosen, seed);
                // Each message on its own, as a network would hand them over.
                for c in chosen {
                    rs[to].doc.apply_changes(vec![c]).unwrap();
                }
            }
        }
    }
    // Finally everybody hears from everybody, in both directions.
    for _ in 0..2 {
        for i in 0..replicas {
            for j in 0..replicas {
                if i != j {
                    let changes = rs[i].doc.changes_since(&[]);
                    rs[j].doc.apply_changes(changes).unwrap();
                }
            }
        }
    }
    let mut heads0 = rs[0].doc.heads();
    heads0.sort();
    let json0 = rs[0].doc.json(None);
    for r in &rs[1..] {
        let mut h = r.doc.heads();
        h.sort();
        prop_assert_eq!(&h, &heads0, "replicas converge on the same heads");
        prop_assert_eq!(r.doc.json(None), json0.clone(), "replicas show the same record");
        prop_assert!(!r.doc.has_missing_deps());
    }
    prop_assert!(rs[0].doc.read::<Visit>().is_ok(), "the merged record still reads");
    let conflicts = rs[0].doc.conflicts();
    let superseded: HashSet<ChangeHash> = edits.iter().flat_map(|e| e.supersedes.iter().copied()).collect();
    for e in edits.iter().filter(|e| !superseded.contains(&e.hash)) {
        let visible = get_path(&json0, &e.path);
        let in_conflict = conflicts.iter().any(|c| c.path == e.path && c.values.iter().any(|v| v.value == e.value));
        prop_assert!(
            visible == Some(&e.value) || in_conflict,
            "edit {:?} = {} is neither visible ({:?}) nor in a conflict",
            e.path,
            e.value,
            visible
        );
    }
    // Every listed conflict offers the visible value first.
    for c in &conflicts {
        prop_assert_eq!(get_path(&json0, &c.path), Some(&c.values[0].value));
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_and_lose_no_edit(
        (replicas, ops) in (3usize..=5).prop_flat_map(|n| (Just(n), proptest::collection::vec(op(n), 1..40)))
    ) {
        run(replicas, ops)?;
    }
}
