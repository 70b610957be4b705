//! Model-based property test of the room rules: random operation sequences
//! run against `roomd::room::RoomState` (pure, no sockets) and against a
//! small reference model written from the issue's rules. After every step
//! the outcome and the state must agree, and the invariants must hold:
//! admissions never exceed capacity (lowering it keeps existing members),
//! nobody but an admin gets in while locked (owners are already in), no duplicate
//! member, a wrong or missing join code never admits, and errors come in
//! the documented order. Then the room is ended and emptied, and its
//! [`EndedRoom`] summary must answer every command as the live state's
//! checks do (or `error-room-inactive` where those would let a change
//! through), so the two cannot drift apart.

use proptest::prelude::*;
use proptest::test_runner::Config;
use roomd::ids::{ConnId, MessageId, RoomCode, RoomId, UserId};
use roomd::permissions::Principal;
use roomd::room::{
    CreateOptions, Effect, EndedRoom, Flag, HistoryParams, JoinParams, Joined, Reply, RoleKind, RoomCommand,
    RoomError, RoomRoles, RoomState, RoomType, SendParams, Setting, SystemKind,
};
use roomd::time::Millis;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Callers: 0 = host (creator), 1 = admin, 2 = bot, 3..=5 plain users,
/// 6..=7 guests.
const PEOPLE: usize = 8;
const HOST: usize = 0;
const JOIN_CODE: &str = "letmein";

fn is_admin(i: usize) -> bool {
    i == 1
}
fn is_bot(i: usize) -> bool {
    i == 2
}
fn is_guest(i: usize) -> bool {
    i >= 6
}

fn uid(i: usize) -> UserId {
    if is_guest(i) { UserId(format!("guest-{i}")) } else { UserId(format!("user-{i}")) }
}

fn principal(i: usize) -> Principal {
    Principal {
        id: uid(i),
        username: format!("name{i}"),
        name: None,
        admin: is_admin(i),
        bot: is_bot(i),
        guest: is_guest(i),
    }
}

#[derive(Debug, Clone, Copy)]
enum Guess {
    Missing,
    Empty,
    Right,
    Wrong,
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Owner,
    Moderator,
}

impl Role {
    fn bits(self) -> RoomRoles {
        match self {
            Role::Owner => RoomRoles::OWNER,
            Role::Moderator => RoomRoles::MODERATOR,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    JoinSelf(usize, Guess),
    JoinByCode(usize),
    Leave(usize),
    Lock(usize, bool),
    SetCapacity(usize, Option<u32>),
    SetJoinCode(usize, bool),
    SetGuestAccess(usize, bool),
    /// Grant (true) or revoke a room role of a member (no method for it in
    /// this issue; the state is mutated directly, as a future method would).
    Role(usize, Role, bool),
    End(usize),
    Archive(bool),
}

fn person() -> impl Strategy<Value = usize> {
    0..PEOPLE
}

fn op() -> impl Strategy<Value = Op> {
    let guess = prop_oneof![Just(Guess::Missing), Just(Guess::Empty), Just(Guess::Right), Just(Guess::Wrong)];
    let role = prop_oneof![Just(Role::Owner), Just(Role::Moderator)];
    prop_oneof![
        6 => (person(), guess).prop_map(|(p, g)| Op::JoinSelf(p, g)),
        6 => person().prop_map(Op::JoinByCode),
        4 => person().prop_map(Op::Leave),
        2 => (person(), any::<bool>()).prop_map(|(p, b)| Op::Lock(p, b)),
        2 => (person(), proptest::option::of(0u32..7)).prop_map(|(p, c)| Op::SetCapacity(p, c)),
        1 => (person(), any::<bool>()).prop_map(|(p, b)| Op::SetJoinCode(p, b)),
        1 => (person(), any::<bool>()).prop_map(|(p, b)| Op::SetGuestAccess(p, b)),
        2 => (person(), role, any::<bool>()).prop_map(|(p, r, b)| Op::Role(p, r, b)),
        1 => person().prop_map(Op::End),
        1 => any::<bool>().prop_map(Op::Archive),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    private: bool,
    locked: bool,
    cap: Option<u32>,
    guest_access: bool,
    others: BTreeSet<usize>,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.7, 1u32..6),
        any::<bool>(),
        proptest::collection::btree_set(3usize..6, 0..3),
    )
        .prop_map(|(private, locked, cap, guest_access, others)| Setup {
            private,
            locked,
            cap,
            guest_access,
            others,
        })
}

/// What a member holds in the reference model.
#[derive(Debug, Clone, Default)]
struct Roles {
    owner: bool,
    moderator: bool,
}

/// The reference model: the issue's rules, written as plainly as possible.
#[derive(Debug, Clone)]
struct Model {
    private: bool,
    members: BTreeMap<usize, Roles>,
    cap: Option<u32>,
    locked: bool,
    join_code: bool,
    active: bool,
    archived: bool,
    guest_access: bool,
}

/// The outcome kinds compared between model and implementation.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Admitted,
    AlreadyMember,
    Done,
    Err(RoomError),
}

impl Model {
    fn roles(&self, i: usize) -> Roles {
        self.members.get(&i).cloned().unwrap_or_default()
    }

    fn is_full(&self) -> bool {
        self.cap.is_some_and(|c| self.members.len() >= c as usize)
    }

    /// "The lock blocks self-joins for everyone but the room's owners and
    /// admins". Room roles belong to a membership, so a non-member (even the
    /// creator, after leaving) is no owner: only admins pass.
    fn bypasses_lock(&self, i: usize) -> bool {
        is_admin(i) || self.roles(i).owner
    }

    fn may_edit(&self, i: usize) -> bool {
        let r = self.roles(i);
        !is_guest(i) && (is_admin(i) || r.owner || r.moderator)
    }

    fn admit(&mut self, i: usize) -> Outcome {
        self.members.insert(i, Roles::default());
        Outcome::Admitted
    }

    fn join_self(&mut self, i: usize, guess: Guess) -> Outcome {
        use RoomError::*;
        if self.members.contains_key(&i) {
            return Outcome::AlreadyMember;
        }
        if self.private || is_guest(i) {
            return Outcome::Err(NotAllowed);
        }
        if self.archived {
            return Outcome::Err(Archived);
        }
        if !self.active {
            return Outcome::Err(Inactive);
        }
        if self.locked && !self.bypasses_lock(i) {
            return Outcome::Err(Locked);
        }
        if self.join_code && !(is_admin(i) || is_bot(i)) {
            match guess {
                Guess::Missing | Guess::Empty => return Outcome::Err(CodeRequired),
                Guess::Wrong => return Outcome::Err(CodeInvalid),
                Guess::Right => {}
            }
        }
        if self.is_full() {
            return Outcome::Err(Full);
        }
        self.admit(i)
    }

    fn join_by_code(&mut self, i: usize) -> Outcome {
        use RoomError::*;
        if self.members.contains_key(&i) {
            return Outcome::AlreadyMember;
        }
        if is_guest(i) && !self.guest_access {
            return Outcome::Err(GuestsNotAllowed);
        }
        if self.archived {
            return Outcome::Err(Archived);
        }
        if !self.active {
            return Outcome::Err(Inactive);
        }
        if self.locked && !self.bypasses_lock(i) {
            return Outcome::Err(Locked);
        }
        if self.is_full() {
            return Outcome::Err(Full);
        }
        self.admit(i)
    }

    fn leave(&mut self, i: usize) -> Outcome {
        let Some(r) = self.members.get(&i).cloned() else {
            // A no-op the method answers as success in a public room; an
            // outsider of a private one learns nothing.
            return Outcome::Err(if self.private { RoomError::NotAllowed } else { RoomError::NotInRoom });
        };
        let other_owners = self.members.iter().filter(|(j, r)| **j != i && r.owner).count();
        let last = self.members.len() == 1;
        if r.owner && other_owners == 0 && !last {
            return Outcome::Err(RoomError::LastOwner);
        }
        self.members.remove(&i);
        if r.owner && last {
            self.active = false;
        }
        Outcome::Done
    }

    fn setting(&mut self, by: usize, apply: impl FnOnce(&mut Model) -> Result<(), RoomError>) -> Outcome {
        if !self.may_edit(by) {
            return Outcome::Err(RoomError::ActionNotAllowed("Editing room"));
        }
        match apply(self) {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Err(e),
        }
    }

    fn end(&mut self, by: usize) -> Outcome {
        if is_guest(by) || !(is_admin(by) || self.roles(by).owner) {
            return Outcome::Err(RoomError::ActionNotAllowed("Ending the room"));
        }
        if !self.active {
            return Outcome::Err(RoomError::Inactive);
        }
        self.active = false;
        Outcome::Done
    }
}

/// Runs `f` on the real state with a fresh effect list; returns the effects.
fn with_fx<T>(f: impl FnOnce(&mut Vec<Effect>) -> T) -> (T, Vec<Effect>) {
    let mut fx = Vec::new();
    let r = f(&mut fx);
    (r, fx)
}

fn joined_outcome(r: Result<Joined, RoomError>) -> Outcome {
    match r {
        Ok(Joined::New(_)) => Outcome::Admitted,
        Ok(Joined::Existing(_)) => Outcome::AlreadyMember,
        Err(e) => Outcome::Err(e),
    }
}

fn unit_outcome<T>(r: Result<T, RoomError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Err(e),
    }
}

fn save(state: &mut RoomState, by: usize, s: Setting, now: Millis) -> (Outcome, Vec<Effect>) {
    let who = principal(by);
    with_fx(|fx| match state.check_settings(&who, std::slice::from_ref(&s)) {
        Ok(()) => {
            state.apply_settings(&who, vec![s], now, fx);
            Outcome::Done
        }
        Err(e) => Outcome::Err(e),
    })
}

fn run(setup: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let host = principal(HOST);
    let others: Vec<_> = setup
        .others
        .iter()
        .map(|&i| roomd::room::UserRef { id: uid(i), username: format!("name{i}"), name: None })
        .collect();
    let initial = 1 + others.len();
    let fits = setup.cap.is_none_or(|c| initial <= c as usize);
    let check = RoomState::check_initial_capacity(initial, setup.cap);
    prop_assert_eq!(check.is_ok(), fits, "initial capacity check");
    if !fits {
        prop_assert_eq!(check, Err(RoomError::Full));
        return Ok(());
    }
    let t = if setup.private { RoomType::Private } else { RoomType::Channel };
    let opts = CreateOptions {
        locked: setup.locked,
        max_participants: setup.cap,
        guest_access: setup.guest_access,
        ..CreateOptions::default()
    };
    let mut state = RoomState::new(
        RoomId::from("room1"),
        "room1".into(),
        t,
        RoomCode("abc-def-ghi".into()),
        &host,
        others,
        opts,
        Millis(1_000),
    );
    let mut model = Model {
        private: setup.private,
        members: std::iter::once((HOST, Roles { owner: true, moderator: false }))
            .chain(setup.others.iter().map(|&i| (i, Roles::default())))
            .collect(),
        cap: setup.cap,
        locked: setup.locked,
        join_code: false,
        active: true,
        archived: false,
        guest_access: setup.guest_access,
    };

    for (step, op) in ops.into_iter().enumerate() {
        let now = Millis(2_000 + step as i64);
        let before = state.members.len();
        let locked_before = state.locked;
        let code_before = state.join_code.is_some();
        let (got, fx, expected) = match op.clone() {
            Op::JoinSelf(i, guess) => {
                let code = match guess {
                    Guess::Missing => None,
                    Guess::Empty => Some(""),
                    Guess::Right => Some(JOIN_CODE),
                    Guess::Wrong => Some("letmeout"),
                };
                let (r, fx) = with_fx(|fx| state.join_self(&principal(i), code, now, fx));
                (joined_outcome(r), fx, model.join_self(i, guess))
            }
            Op::JoinByCode(i) => {
                let (r, fx) = with_fx(|fx| state.join_by_code(&principal(i), now, fx));
                (joined_outcome(r), fx, model.join_by_code(i))
            }
            Op::Leave(i) => {
                let (r, fx) = with_fx(|fx| state.leave(&uid(i), now, fx));
                (unit_outcome(r), fx, model.leave(i))
            }
            Op::Lock(by, on) => {
                let (r, fx) = save(&mut state, by, Setting::Locked(on), now);
                (
                    r,
                    fx,
                    model.setting(by, |m| {
                        m.locked = on;
                        Ok(())
                    }),
                )
            }
            Op::SetCapacity(by, cap) => {
                let (r, fx) = save(&mut state, by, Setting::MaxParticipants(cap), now);
                let expected = model.setting(by, |m| {
                    if cap == Some(0) {
                        return Err(RoomError::InvalidSettingValue("maxParticipants".into()));
                    }
                    m.cap = cap;
                    Ok(())
                });
                (r, fx, expected)
            }
            Op::SetJoinCode(by, on) => {
                let code = if on { JOIN_CODE } else { "" };
                let (r, fx) = save(&mut state, by, Setting::JoinCode(code.into()), now);
                (
                    r,
                    fx,
                    model.setting(by, |m| {
                        m.join_code = on;
                        Ok(())
                    }),
                )
            }
            Op::SetGuestAccess(by, on) => {
                let (r, fx) = save(&mut state, by, Setting::GuestAccess(on), now);
                (
                    r,
                    fx,
                    model.setting(by, |m| {
                        m.guest_access = on;
                        Ok(())
                    }),
                )
            }
            Op::Role(i, role, grant) => {
                if let Some(m) = state.members.get_mut(&uid(i)) {
                    if grant {
                        m.roles.insert(role.bits());
                    } else {
                        m.roles.remove(role.bits());
                    }
                }
                if let Some(r) = model.members.get_mut(&i) {
                    match role {
                        Role::Owner => r.owner = grant,
                        Role::Moderator => r.moderator = grant,
                    }
                }
                (Outcome::Done, Vec::new(), Outcome::Done)
            }
            Op::End(by) => {
                let (r, fx) = with_fx(|fx| state.end(&principal(by), now, fx));
                (unit_outcome(r), fx, model.end(by))
            }
            Op::Archive(on) => {
                state.archived = on;
                model.archived = on;
                (Outcome::Done, Vec::new(), Outcome::Done)
            }
        };

        let ctx = format!("step {step}: {op:?}");
        prop_assert_eq!(&got, &expected, "{}", ctx);

        // Outcome-specific invariants, independent of the model.
        match (&op, &got) {
            (Op::JoinSelf(i, _) | Op::JoinByCode(i), Outcome::Admitted) => {
                prop_assert_eq!(state.members.len(), before + 1, "{}", ctx);
                if let Some(cap) = state.max_participants {
                    prop_assert!(state.members.len() <= cap as usize, "over capacity: {}", ctx);
                }
                prop_assert!(!locked_before || is_admin(*i), "admitted while locked: {}", ctx);
                if let Op::JoinSelf(_, g) = op {
                    let skips_code = is_admin(*i) || is_bot(*i);
                    prop_assert!(
                        !code_before || skips_code || matches!(g, Guess::Right),
                        "admitted without the right code: {}",
                        ctx
                    );
                }
                let name = format!("name{i}");
                prop_assert!(
                    fx.iter().any(|e| matches!(e, Effect::System { kind: SystemKind::UserJoined, msg, .. } if *msg == name)),
                    "no uj effect: {} {:?}",
                    ctx,
                    fx
                );
                prop_assert!(
                    fx.iter().any(|e| matches!(e, Effect::Participant { joined: true, .. })),
                    "no participant-joined effect: {}",
                    ctx
                );
            }
            (Op::JoinSelf(..) | Op::JoinByCode(..), Outcome::AlreadyMember) => {
                prop_assert_eq!(state.members.len(), before, "{}", ctx);
                prop_assert!(fx.is_empty(), "already-member join emitted {:?}: {}", fx, ctx);
            }
            (Op::Leave(_), Outcome::Done) => {
                prop_assert_eq!(state.members.len(), before - 1, "{}", ctx);
                prop_assert!(
                    fx.iter().any(|e| matches!(e, Effect::System { kind: SystemKind::UserLeft, .. })),
                    "no ul effect: {}",
                    ctx
                );
            }
            (_, Outcome::Err(_)) => {
                prop_assert!(fx.is_empty(), "refused operation emitted {:?}: {}", fx, ctx);
                prop_assert_eq!(state.members.len(), before, "{}", ctx);
            }
            _ => {}
        }

        // The whole state agrees with the model after every step.
        let ids: BTreeSet<UserId> = state.members.keys().cloned().collect();
        let expected_ids: BTreeSet<UserId> = model.members.keys().map(|&i| uid(i)).collect();
        prop_assert_eq!(ids, expected_ids, "members after {}", ctx);
        prop_assert_eq!(state.locked, model.locked, "{}", ctx);
        prop_assert_eq!(state.active, model.active, "{}", ctx);
        prop_assert_eq!(state.max_participants, model.cap, "{}", ctx);
        prop_assert_eq!(state.join_code.is_some(), model.join_code, "{}", ctx);
        prop_assert_eq!(state.guest_access, model.guest_access, "{}", ctx);
        // No duplicate member: one seat per user, distinct participant ids.
        let pids: HashSet<&String> = state.members.values().map(|m| &m.participant_id).collect();
        prop_assert_eq!(pids.len(), state.members.len(), "{}", ctx);
        for (id, m) in &state.members {
            prop_assert_eq!(id, &m.user.id);
            prop_assert_eq!(m.guest, id.is_guest());
        }
        prop_assert_eq!(state.to_doc()["usersCount"].as_u64(), Some(state.members.len() as u64));
    }
    ended_answers_as_live(state)
}

/// Asks the ended room `cmd` (built around a reply channel) and takes its
/// answer, which it gives at once, without a task.
fn ask<T>(ended: &EndedRoom, make: impl FnOnce(Reply<T>) -> RoomCommand) -> Result<T, RoomError> {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    ended.answer(make(tx));
    rx.try_recv().expect("an ended room answers at once")
}

/// Ends and empties `state` as the live room would be when it retires, then
/// checks that its summary answers like the live state for every caller.
fn ended_answers_as_live(mut state: RoomState) -> Result<(), TestCaseError> {
    let now = Millis(1_000_000);
    if state.active {
        prop_assert_eq!(state.end(&principal(1), now, &mut Vec::new()), Ok(()));
    }
    let uids: Vec<UserId> = state.members.keys().cloned().collect();
    for u in &uids {
        state.remove_member(u, now, SystemKind::UserLeft, None, &mut Vec::new());
    }
    let ended = EndedRoom::new(state.clone());
    // The live room's answer: its own operation on a copy of its state.
    let live = || state.clone();
    for i in 0..PEOPLE {
        let who = principal(i);
        let ctx = format!("ended room, caller {i}, room {state:?}");
        for code in [None, Some(""), Some(JOIN_CODE), Some("letmeout")] {
            let got = ask(&ended, |tx| RoomCommand::JoinSelf {
                who: Box::new(who.clone()),
                code: code.map(str::to_owned),
                respond_to: tx,
            });
            let want = live().join_self(&who, code, now, &mut Vec::new());
            prop_assert_eq!(got, want, "joinRoom {:?}: {}", code, ctx);
        }
        let got = ask(&ended, |tx| RoomCommand::JoinByCode {
            who: Box::new(who.clone()),
            params: Box::new(JoinParams { conn: ConnId(1), listener: None, since: None }),
            respond_to: tx,
        });
        let want = live().join_by_code(&who, now, &mut Vec::new());
        prop_assert_eq!(got.err(), want.err(), "join-room: {}", ctx);
        let got = ask(&ended, |tx| RoomCommand::End { who: Box::new(who.clone()), respond_to: tx });
        prop_assert_eq!(got, live().end(&who, now, &mut Vec::new()), "endRoom: {}", ctx);
        let got = ask(&ended, |tx| RoomCommand::Leave { uid: who.id.clone(), respond_to: tx });
        prop_assert_eq!(got, live().leave(&who.id, now, &mut Vec::new()).map(|_| ()), "leaveRoom: {}", ctx);
        let flag = Flag::Favorite(true);
        let got = ask(&ended, |tx| RoomCommand::SetFlag { uid: who.id.clone(), flag, respond_to: tx });
        prop_assert_eq!(got, live().set_flag(&who.id, flag, &mut Vec::new()), "toggleFavorite: {}", ctx);
        for id in [None, Some(MessageId::from("m1"))] {
            let params = Box::new(SendParams { id: id.clone(), msg: "hi".into(), tmid: None });
            let got =
                ask(&ended, |tx| RoomCommand::Send { who: Box::new(who.clone()), params, respond_to: tx });
            let want = live().check_send(&who, id.as_ref(), |_| Ok(false)).map(|_| ()).err();
            prop_assert_eq!(got.err(), want, "sendMessage: {}", ctx);
        }
        let got = ask(&ended, |tx| RoomCommand::DocFor { uid: who.id.clone(), respond_to: tx });
        prop_assert_eq!(got, state.info_for(&who.id), "getRoomById: {}", ctx);
        let got = ask(&ended, |tx| RoomCommand::Roles { uid: who.id.clone(), respond_to: tx });
        prop_assert_eq!(got, state.role_entries(&who.id), "getRoomRoles: {}", ctx);
        let got = ask(&ended, |tx| RoomCommand::SubscriptionDoc { uid: who.id.clone(), respond_to: tx });
        prop_assert_eq!(got, Ok(state.subscription_info(&who.id)), "subscription: {}", ctx);
        // History is read as the live room would allow; its messages are no
        // longer kept in memory.
        let got = ask(&ended, |tx| RoomCommand::History {
            params: Box::new(HistoryParams {
                uid: who.id.clone(),
                end: None,
                after: None,
                limit: 10,
                max_bytes: 1 << 20,
            }),
            respond_to: tx,
        });
        let want = if state.can_read(&who.id, true) { Ok(Vec::new()) } else { Err(RoomError::NotAllowed) };
        prop_assert_eq!(got, want, "loadHistory: {}", ctx);

        // Whatever would change the room is refused as inactive, whoever asks.
        let target = uid(3);
        let inactive = Err(RoomError::Inactive);
        let who = || Box::new(principal(i));
        prop_assert_eq!(
            ask(&ended, |tx| RoomCommand::Settings {
                who: who(),
                settings: vec![Setting::Locked(true)],
                respond_to: tx
            }),
            inactive.clone()
        );
        prop_assert_eq!(
            ask(&ended, |tx| RoomCommand::SetArchived { who: who(), archived: true, respond_to: tx }),
            inactive.clone()
        );
        prop_assert_eq!(
            ask(&ended, |tx| RoomCommand::SetMuted {
                who: who(),
                target: target.clone(),
                muted: true,
                respond_to: tx
            }),
            inactive.clone()
        );
        prop_assert_eq!(
            ask(&ended, |tx| RoomCommand::SetRole {
                who: who(),
                target: target.clone(),
                role: RoleKind::Moderator,
                add: true,
                respond_to: tx
            }),
            inactive.clone()
        );
        prop_assert_eq!(
            ask(&ended, |tx| RoomCommand::RemoveMember {
                who: who(),
                target: target.clone(),
                respond_to: tx
            }),
            inactive.clone()
        );
        let target_ref = roomd::room::UserRef { id: target.clone(), username: "name3".into(), name: None };
        prop_assert_eq!(
            ask(&ended, |tx| RoomCommand::AddMember {
                who: who(),
                target: Box::new(target_ref),
                respond_to: tx
            }),
            Err(RoomError::Inactive)
        );
    }
    Ok(())
}

proptest! {
    // A fixed number of cases keeps CI fast and its cost predictable.
    #![proptest_config(Config { cases: 512, max_shrink_iters: 2000, ..Config::default() })]

    #[test]
    fn room_rules_match_the_model(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(setup, ops)?;
    }
}

/// A hand-written sequence that walks the documented `joinRoom` error order
/// from the last check to the first, so a regression names the step.
#[test]
fn join_self_error_order_walkthrough() {
    let host = principal(HOST);
    let user = principal(3);
    let mut state = RoomState::new(
        RoomId::from("r"),
        "r".into(),
        RoomType::Channel,
        RoomCode("abc-def-ghi".into()),
        &host,
        vec![roomd::room::UserRef { id: uid(4), username: "name4".into(), name: None }],
        CreateOptions { max_participants: Some(2), locked: true, ..CreateOptions::default() },
        Millis(0),
    );
    state.join_code = Some(JOIN_CODE.into());
    state.active = false;
    state.archived = true;
    let mut fx = Vec::new();
    let mut attempt = |s: &mut RoomState| s.join_self(&user, Some("wrong"), Millis(1), &mut fx).err();
    assert_eq!(attempt(&mut state), Some(RoomError::Archived));
    state.archived = false;
    assert_eq!(attempt(&mut state), Some(RoomError::Inactive));
    state.active = true;
    assert_eq!(attempt(&mut state), Some(RoomError::Locked));
    state.locked = false;
    assert_eq!(attempt(&mut state), Some(RoomError::CodeInvalid));
    assert_eq!(state.join_self(&user, None, Millis(1), &mut Vec::new()).err(), Some(RoomError::CodeRequired));
    assert_eq!(
        state.join_self(&user, Some(JOIN_CODE), Millis(1), &mut Vec::new()).err(),
        Some(RoomError::Full)
    );
    state.kind = RoomType::Private;
    assert_eq!(attempt(&mut state), Some(RoomError::NotAllowed));
}
