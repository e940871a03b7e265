//! Seeded random scenarios in the style of yrs' `run_scenario`: several replicas of one account
//! edit every field at random while change bundles travel through a lossy, reordering,
//! duplicating message queue, with network partitions that later heal. At the end every replica
//! must hold the same heads and the same account, with nothing anyone typed lost.
//!
//! `SCENARIO_SEED=<n>` replays one scenario; `SCENARIO_COUNT=<n>` changes how many run
//! (default 1,000). A failure names its seed.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use automerge::{ObjType, ROOT, ReadDoc, Value};
use fieldnotes_model::{
    Account, AccountDoc, AccountId, Contact, ContactId, DriverKey, Editor, FollowUpId, Goal,
    GoalId, GoalStatus, NewAccount, NewNote, NoteId, Strength, TeamId, UserId, UsualDriver,
};

/// xorshift64*: small, fast, and the same on every platform, so a seed always replays.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn bytes(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_le_bytes());
        out[8..].copy_from_slice(&self.next().to_le_bytes());
        out
    }
}

struct Message {
    from: usize,
    to: usize,
    changes: Vec<automerge::Change>,
}

/// What the test knows must hold at the end, whatever order things arrived in.
#[derive(Default)]
struct Expectations {
    inserted_chars: BTreeSet<char>,
    deleted_chars: BTreeSet<char>,
    notes: BTreeMap<NoteId, (UserId, String)>,
    follow_ups: BTreeSet<FollowUpId>,
    contacts_added: BTreeSet<ContactId>,
    contacts_removed: BTreeSet<ContactId>,
    archived_ever: bool,
    restored_ever: bool,
}

struct World {
    seed: u64,
    rng: Rng,
    replicas: Vec<AccountDoc>,
    queue: Vec<Message>,
    /// Every change made so far, in the order it was made (so dependencies come first).
    all_changes: Vec<automerge::Change>,
    /// The hashes each replica has received (applied, or held by automerge until its
    /// dependencies arrive).
    known: Vec<HashSet<automerge::ChangeHash>>,
    /// Replica i is in group `group[i]`; messages between groups are lost while partitioned.
    group: Vec<u8>,
    partitioned: bool,
    now: i64,
    next_char: u32,
    next_id: u64,
    expect: Expectations,
}

const DRIVERS: [&str; 4] = ["relationship", "delivery", "price", "custom"];

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let count = 5;
        let now = 1_700_000_000_000;
        let editor = |i: usize, rng: &mut Rng| {
            Editor::new(UserId::new(format!("user{i}")), &rng.bytes()).unwrap()
        };
        let first_editor = editor(0, &mut rng);
        let first = AccountDoc::create(
            first_editor,
            NewAccount {
                id: AccountId::new("account"),
                team: TeamId::new("team"),
                name: "Acme".into(),
                branch: "North".into(),
                area: "Riverside".into(),
            },
            now,
        )
        .unwrap();
        // Every replica starts from the created document (as if each had loaded it).
        let mut replicas = Vec::with_capacity(count);
        for i in 1..count {
            let e = editor(i, &mut rng);
            replicas.push(AccountDoc::from_automerge(e, first.automerge().clone()));
        }
        replicas.insert(0, first);
        World {
            seed,
            all_changes: Vec::new(),
            known: vec![HashSet::new(); count],
            rng,
            group: vec![0; count],
            replicas,
            queue: Vec::new(),
            partitioned: false,
            now,
            next_char: 0x4e00,
            next_id: 0,
            expect: Expectations::default(),
        }
    }

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("id{}", self.next_id)
    }

    fn fresh_chars(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                let c = char::from_u32(self.next_char).unwrap();
                self.next_char += 1;
                self.expect.inserted_chars.insert(c);
                c
            })
            .collect()
    }

    fn pick_existing<K: Clone>(&mut self, keys: Vec<K>) -> Option<K> {
        if keys.is_empty() {
            None
        } else {
            let i = self.rng.below(keys.len());
            Some(keys[i].clone())
        }
    }

    fn random_edit(&mut self, r: usize) {
        self.now += 1 + self.rng.below(1000) as i64;
        let now = self.now;
        let account = Keys::of(&self.replicas[r]);
        match self.rng.below(17) {
            0 => {
                let name = format!("Name {}", self.rng.below(100));
                self.replicas[r].rename(&name, now).unwrap()
            }
            1 => {
                let branch = format!("Branch {}", self.rng.below(5));
                self.replicas[r].set_branch(&branch, now).unwrap()
            }
            2 => {
                let area = format!("Area {}", self.rng.below(5));
                self.replicas[r].set_area(&area, now).unwrap()
            }
            3 => {
                // Update an existing contact (one field) or add a new one.
                let existing = self.pick_existing(account.contacts.keys().cloned().collect());
                let (id, mut contact) = match existing {
                    Some(id) if self.rng.chance(50) => {
                        let c = contact_of(&self.replicas[r], &id);
                        (id, c)
                    }
                    _ => {
                        let id = ContactId::new(self.fresh_id());
                        self.expect.contacts_added.insert(id.clone());
                        (
                            id,
                            Contact {
                                name: format!("Person {}", self.rng.below(50)),
                                ..Contact::default()
                            },
                        )
                    }
                };
                match self.rng.below(3) {
                    0 => contact.role = format!("Role {}", self.rng.below(9)),
                    1 => contact.phone = format!("555-{:04}", self.rng.below(10_000)),
                    _ => contact.email = format!("p{}@example.com", self.rng.below(99)),
                }
                self.replicas[r].put_contact(&id, &contact, now).unwrap()
            }
            4 => {
                if let Some(id) = self.pick_existing(account.contacts.keys().cloned().collect()) {
                    self.expect.contacts_removed.insert(id.clone());
                    self.replicas[r].remove_contact(&id, now).unwrap()
                }
            }
            5 | 6 => {
                let key = match DRIVERS[self.rng.below(DRIVERS.len())] {
                    "custom" => DriverKey::custom("Late pickups").unwrap(),
                    usual => DriverKey::parse(usual).unwrap(),
                };
                let strength = Strength::new(1 + self.rng.below(5) as i64).unwrap();
                let old = evidence_of(&self.replicas[r], &key);
                let evidence = if self.rng.chance(50) {
                    format!("{old} +{}", self.rng.below(10))
                } else {
                    format!("said {}", self.rng.below(10))
                };
                self.replicas[r]
                    .set_driver(&key, strength, &evidence, now)
                    .unwrap()
            }
            7 => {
                if let Some(key) = self.pick_existing(account.drivers.keys().cloned().collect()) {
                    self.replicas[r].remove_driver(&key, now).unwrap()
                }
            }
            8 => {
                let status = [
                    GoalStatus::NotStarted,
                    GoalStatus::InProgress,
                    GoalStatus::Achieved,
                    GoalStatus::Abandoned,
                ][self.rng.below(4)]
                .clone();
                match self.pick_existing(account.goals.keys().cloned().collect()) {
                    Some(id) if self.rng.chance(60) => {
                        self.replicas[r].set_goal_status(&id, &status, now).unwrap()
                    }
                    _ => {
                        let id = GoalId::new(self.fresh_id());
                        let title = format!("Goal {}", self.rng.below(20));
                        self.replicas[r]
                            .set_goal(&id, &Goal { title, status }, now)
                            .unwrap()
                    }
                }
            }
            9 | 10 => {
                let id = NoteId::new(self.fresh_id());
                let text = format!("visit {} by {r}", id);
                let drivers = vec![DriverKey::usual(UsualDriver::ALL[self.rng.below(9)])];
                let objections = if self.rng.chance(30) {
                    vec!["too pricey".to_string()]
                } else {
                    vec![]
                };
                let user = self.replicas[r].editor().user().clone();
                self.expect.notes.insert(id.clone(), (user, text.clone()));
                self.replicas[r]
                    .add_note(
                        NewNote {
                            id,
                            text,
                            drivers,
                            objections,
                        },
                        now,
                    )
                    .unwrap()
            }
            11 => {
                let id = FollowUpId::new(self.fresh_id());
                self.expect.follow_ups.insert(id.clone());
                let due = now + self.rng.below(10) as i64 * 86_400_000 - 4 * 86_400_000;
                self.replicas[r]
                    .add_follow_up(&id, "call back", due, now)
                    .unwrap()
            }
            12 => {
                if let Some(id) = self.pick_existing(account.follow_ups.keys().cloned().collect()) {
                    let done = self.rng.chance(70);
                    self.replicas[r].set_follow_up_done(&id, done, now).unwrap()
                }
            }
            13 => {
                if self.rng.chance(70) {
                    self.expect.archived_ever = true;
                    self.replicas[r].archive(now).unwrap()
                } else {
                    self.expect.restored_ever = true;
                    self.replicas[r].restore(now).unwrap()
                }
            }
            _ => {
                // Typing into the shared value proposition: mostly inserts, some deletes.
                let len = self.replicas[r].value_proposition_len();
                if len > 0 && self.rng.chance(25) {
                    let pos = self.rng.below(len);
                    let del = 1 + self.rng.below((len - pos).min(3));
                    let deleted: Vec<char> = value_proposition(&self.replicas[r])
                        .chars()
                        .skip(pos)
                        .take(del)
                        .collect();
                    self.expect.deleted_chars.extend(deleted);
                    self.replicas[r]
                        .splice_value_proposition(pos, del, "", now)
                        .unwrap()
                } else {
                    let pos = self.rng.below(len + 1);
                    let n = 1 + self.rng.below(3);
                    let text = self.fresh_chars(n);
                    self.replicas[r]
                        .splice_value_proposition(pos, 0, &text, now)
                        .unwrap()
                }
            }
        }
        // Broadcast what this edit produced (every edit is one change).
        if let Some(change) = self.replicas[r]
            .automerge_mut()
            .get_last_local_change()
            .filter(|c| c.timestamp() == now)
            // An owned change on both automerge lines (0.6 lends it, 0.12 builds it).
            .map(|c| c.to_owned())
        {
            self.known[r].insert(change.hash());
            self.all_changes.push(change.clone());
            let changes = vec![change];
            for to in 0..self.replicas.len() {
                if to == r {
                    continue;
                }
                // Changes waiting to go to the same peer often travel as one bundle.
                let pending = self.queue.iter().rposition(|m| m.from == r && m.to == to);
                match pending {
                    Some(i) if self.rng.chance(70) => {
                        self.queue[i].changes.extend(changes.iter().cloned())
                    }
                    _ => self.queue.push(Message {
                        from: r,
                        to,
                        changes: changes.clone(),
                    }),
                }
            }
        }
    }

    fn deliver_one(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let i = self.rng.below(self.queue.len());
        // Sometimes a message is delivered twice (it stays in the queue).
        let duplicate = self.rng.chance(10);
        let message = if duplicate {
            Message {
                from: self.queue[i].from,
                to: self.queue[i].to,
                changes: self.queue[i].changes.clone(),
            }
        } else {
            self.queue.swap_remove(i)
        };
        if self.partitioned && self.group[message.from] != self.group[message.to] {
            return; // lost; resent when the partition heals
        }
        self.known[message.to].extend(message.changes.iter().map(|c| c.hash()));
        self.replicas[message.to]
            .automerge_mut()
            .apply_changes(message.changes)
            .unwrap();
    }

    fn partition(&mut self) {
        self.partitioned = true;
        for g in self.group.iter_mut() {
            *g = (self.rng.next() % 2) as u8;
        }
    }

    /// Heal the network: like a sync protocol, each peer sends each other peer what it lacks.
    fn heal(&mut self) {
        self.partitioned = false;
        for from in 0..self.replicas.len() {
            for to in 0..self.replicas.len() {
                if from == to {
                    continue;
                }
                let changes: Vec<automerge::Change> = self
                    .all_changes
                    .iter()
                    .filter(|c| {
                        self.known[from].contains(&c.hash()) && !self.known[to].contains(&c.hash())
                    })
                    .cloned()
                    .collect();
                if !changes.is_empty() {
                    self.queue.push(Message { from, to, changes });
                }
            }
        }
    }

    fn run(&mut self, steps: usize) {
        for _ in 0..steps {
            match self.rng.below(100) {
                0..=44 => {
                    let r = self.rng.below(self.replicas.len());
                    self.random_edit(r);
                }
                45..=89 => self.deliver_one(),
                90..=94 if !self.partitioned => self.partition(),
                90..=94 => self.heal(),
                _ => {}
            }
        }
        // Heal fully and drain, until nobody lacks anything.
        for _round in 0..10 {
            self.heal();
            while !self.queue.is_empty() {
                self.deliver_one();
            }
            let heads: Vec<_> = self
                .replicas
                .iter_mut()
                .map(|r| r.automerge_mut().get_heads())
                .collect();
            if heads.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
        }
    }
}

/// The ids present in a replica's maps, read straight from the document (hydrating the whole
/// account before every edit would dominate the run time).
struct Keys {
    contacts: BTreeMap<ContactId, ()>,
    drivers: BTreeMap<DriverKey, ()>,
    goals: BTreeMap<GoalId, ()>,
    follow_ups: BTreeMap<FollowUpId, ()>,
}

impl Keys {
    fn of(doc: &AccountDoc) -> Keys {
        fn keys<K: From<String> + Ord>(doc: &AccountDoc, map: &str) -> BTreeMap<K, ()> {
            let am = doc.automerge();
            match am.get(ROOT, map).unwrap() {
                Some((Value::Object(ObjType::Map), id)) => {
                    am.keys(&id).map(|k| (K::from(k), ())).collect()
                }
                _ => BTreeMap::new(),
            }
        }
        Keys {
            contacts: keys(doc, "contacts"),
            drivers: keys(doc, "drivers"),
            goals: keys(doc, "goals"),
            follow_ups: keys(doc, "follow_ups"),
        }
    }
}

fn contact_of(doc: &AccountDoc, id: &ContactId) -> Contact {
    let am = doc.automerge();
    let Some((_, contacts)) = am.get(ROOT, "contacts").unwrap() else {
        panic!("no contacts")
    };
    let Some((_, contact)) = am.get(&contacts, id.as_str()).unwrap() else {
        panic!("no contact {id}")
    };
    let field = |key: &str| match am.get(&contact, key).unwrap() {
        Some((value, _)) => value.into_string().unwrap_or_default(),
        None => String::new(),
    };
    Contact {
        name: field("name"),
        role: field("role"),
        phone: field("phone"),
        email: field("email"),
    }
}

fn evidence_of(doc: &AccountDoc, key: &DriverKey) -> String {
    let am = doc.automerge();
    let Some((_, drivers)) = am.get(ROOT, "drivers").unwrap() else {
        panic!("no drivers")
    };
    let Some((_, driver)) = am.get(&drivers, key.as_str()).unwrap() else {
        return String::new();
    };
    match am.get(&driver, "evidence").unwrap() {
        Some((Value::Object(ObjType::Text), id)) => am.text(&id).unwrap(),
        _ => String::new(),
    }
}

fn value_proposition(doc: &AccountDoc) -> String {
    let am = doc.automerge();
    match am.get(ROOT, "value_proposition").unwrap() {
        Some((Value::Object(ObjType::Text), id)) => am.text(&id).unwrap(),
        other => panic!("value proposition is not text: {other:?}"),
    }
}

fn check(world: &mut World) -> Result<(), String> {
    let heads: Vec<_> = world
        .replicas
        .iter_mut()
        .map(|r| r.automerge_mut().get_heads())
        .collect();
    if !heads.windows(2).all(|w| w[0] == w[1]) {
        return Err("replicas did not converge to the same heads".into());
    }
    let accounts: Vec<Account> = world
        .replicas
        .iter()
        .map(|r| r.hydrate().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if let Some(i) = accounts.iter().position(|a| a != &accounts[0]) {
        return Err(format!(
            "replica {i} hydrates differently:\n{:#?}\nvs\n{:#?}",
            accounts[i], accounts[0]
        ));
    }
    let account = &accounts[0];
    let expect = &world.expect;

    // Every character typed is there exactly once, unless someone deleted it.
    let mut seen = BTreeSet::new();
    for c in account.value_proposition.chars() {
        if !seen.insert(c) {
            return Err(format!("character {c:?} appears twice"));
        }
    }
    let wanted: BTreeSet<char> = expect
        .inserted_chars
        .difference(&expect.deleted_chars)
        .copied()
        .collect();
    if seen != wanted {
        let lost: Vec<_> = wanted.difference(&seen).collect();
        let extra: Vec<_> = seen.difference(&wanted).collect();
        return Err(format!(
            "value proposition lost {lost:?} / kept deleted {extra:?}"
        ));
    }

    // Every appended note is kept, with its author and text.
    if account.notes.len() != expect.notes.len() {
        return Err(format!(
            "{} notes appended but {} kept",
            expect.notes.len(),
            account.notes.len()
        ));
    }
    for note in &account.notes {
        match expect.notes.get(&note.id) {
            Some((author, text)) if *author == note.author && *text == note.text => {}
            _ => return Err(format!("note {} differs from what was appended", note.id)),
        }
    }
    if !account
        .notes
        .windows(2)
        .all(|w| (w[0].time_millis, &w[0].id) <= (w[1].time_millis, &w[1].id))
    {
        return Err("timeline is not in time order".into());
    }

    let follow_ups: BTreeSet<FollowUpId> = account.follow_ups.keys().cloned().collect();
    if follow_ups != expect.follow_ups {
        return Err("a follow-up was lost".into());
    }
    for id in expect.contacts_added.difference(&expect.contacts_removed) {
        if !account.contacts.contains_key(id) {
            return Err(format!("contact {id} was lost"));
        }
    }
    for id in &expect.contacts_removed {
        if account.contacts.contains_key(id) {
            // A remove concurrent with an edit of that contact: automerge keeps the delete, as
            // the edit was inside the removed object.
            return Err(format!("removed contact {id} came back"));
        }
    }
    if expect.archived_ever && !expect.restored_ever && !account.archived {
        return Err("the account was archived but is not after merging".into());
    }
    if !expect.archived_ever && account.archived {
        return Err("the account is archived though nobody archived it".into());
    }

    // What is saved loads back to the same account (checked in every tenth scenario: loading
    // is the slowest step in a debug build).
    if !world.seed.is_multiple_of(10) {
        return Ok(());
    }
    let bytes = world.replicas[0].save();
    let editor = world.replicas[0].editor().clone();
    let reloaded = AccountDoc::load(editor, &bytes).map_err(|e| e.to_string())?;
    if reloaded.hydrate().map_err(|e| e.to_string())? != *account {
        return Err("save and load changed the account".into());
    }
    Ok(())
}

fn run_scenario(seed: u64) {
    let mut world = World::new(seed);
    // Small scenarios, many of them: automerge is slow in a debug build, and 1,000 short
    // scenarios explore more interleavings than 100 long ones.
    let steps = 20 + world.rng.below(20);
    world.run(steps);
    if let Err(problem) = check(&mut world) {
        panic!("scenario failed with SCENARIO_SEED={seed}: {problem}");
    }
}

#[test]
fn random_scenarios_converge_without_loss() {
    if let Ok(seed) = std::env::var("SCENARIO_SEED") {
        run_scenario(seed.parse().expect("SCENARIO_SEED must be a number"));
        return;
    }
    let count: u64 = std::env::var("SCENARIO_COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1_000);
    // Scenarios are independent: spread the seeds over the machine's cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for seed in (t..count).step_by(threads as usize) {
                    run_scenario(seed);
                }
            });
        }
    });
}
