//! `TracingInstrument` (feature `tracing`): one span per task, nested like
//! the nursery tree, entered for each step, closed at exit.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use trioxide::{open_nursery, sleep, BoxError, Builder, Instrument, MockClock, TaskId, TracingInstrument};

#[derive(Debug, Default)]
struct SpanRec {
    /// The span's metadata name (`task` for task spans).
    kind: &'static str,
    /// Its `task.name` field, or the metadata name for other spans.
    name: String,
    parent: Option<u64>,
    enters: u32,
    exits: u32,
    refs: u32,
    closed: bool,
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<SpanRec>, // span id n is spans[n - 1]
    stack: Vec<u64>,
    /// (message, parent span id) of each event.
    events: Vec<(String, Option<u64>)>,
}

/// A subscriber that records spans with their parents, enters, exits and
/// closes, and events with their parent.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<State>>);

impl Recorder {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

struct Fields {
    name: Option<String>,
    message: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "task.name" => self.name = Some(format!("{value:?}")),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = Fields { name: None, message: None };
        attrs.record(&mut fields);
        let mut s = self.state();
        let parent = if attrs.is_root() {
            None
        } else if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else {
            s.stack.last().copied()
        };
        let kind = attrs.metadata().name();
        s.spans.push(SpanRec {
            kind,
            name: fields.name.unwrap_or_else(|| kind.to_string()),
            parent,
            refs: 1,
            ..SpanRec::default()
        });
        Id::from_u64(s.spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields { name: None, message: None };
        event.record(&mut fields);
        let mut s = self.state();
        let parent = if event.is_root() {
            None
        } else if let Some(p) = event.parent() {
            Some(p.into_u64())
        } else {
            s.stack.last().copied()
        };
        s.events.push((fields.message.unwrap_or_default(), parent));
    }

    fn enter(&self, id: &Id) {
        let mut s = self.state();
        s.stack.push(id.into_u64());
        s.spans[id.into_u64() as usize - 1].enters += 1;
    }

    fn exit(&self, id: &Id) {
        let mut s = self.state();
        assert_eq!(s.stack.pop(), Some(id.into_u64()), "exits must mirror enters");
        s.spans[id.into_u64() as usize - 1].exits += 1;
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.state().spans[id.into_u64() as usize - 1].refs += 1;
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        let mut s = self.state();
        let span = &mut s.spans[id.into_u64() as usize - 1];
        span.refs -= 1;
        span.closed = span.refs == 0;
        span.closed
    }
}

/// Counts what the runtime reports, to compare with the spans.
#[derive(Debug, Default)]
struct Counts {
    spawned: Cell<u32>,
    scheduled: Cell<u32>,
    steps: Cell<u32>,
    io_waits: Cell<u32>,
}

impl Instrument for Counts {
    fn task_spawned(&self, _: TaskId) {
        self.spawned.set(self.spawned.get() + 1);
    }
    fn task_scheduled(&self, _: TaskId) {
        self.scheduled.set(self.scheduled.get() + 1);
    }
    fn before_task_step(&self, _: TaskId) {
        self.steps.set(self.steps.get() + 1);
    }
    fn before_io_wait(&self, _: Option<Duration>) {
        self.io_waits.set(self.io_waits.get() + 1);
    }
}

/// main → a nursery with children a and b → each with a grandchild that
/// sleeps (a1, b1), under seed `seed`, inside the span `outer`.
fn traced_run(seed: u64) -> (State, Rc<Counts>) {
    let recorder = Recorder::default();
    let counts = Rc::new(Counts::default());
    let c = counts.clone();
    tracing::subscriber::with_default(recorder.clone(), move || {
        let outer = tracing::info_span!("outer");
        let _entered = outer.enter();
        let clock = MockClock::new();
        clock.set_autojump_threshold(Some(Duration::ZERO));
        Builder::new()
            .seed(seed)
            .clock(clock)
            .instrument(Rc::new(TracingInstrument::new()))
            .instrument(c)
            .run(open_nursery(|n| async move {
                for (child, grandchild) in [("a", "a1"), ("b", "b1")] {
                    n.start_soon_named(child, async move {
                        open_nursery(|n| async move {
                            n.start_soon_named(grandchild, async {
                                sleep(Duration::from_secs(1)).await?;
                                Ok::<_, BoxError>(())
                            })?;
                            Ok::<_, BoxError>(())
                        })
                        .await?;
                        Ok::<_, BoxError>(())
                    })?;
                }
                Ok::<_, BoxError>(())
            }))
            .unwrap();
    });
    let state = std::mem::take(&mut *recorder.state());
    (state, counts)
}

fn name_of(s: &State, id: Option<u64>) -> Option<&str> {
    id.map(|id| s.spans[id as usize - 1].name.as_str())
}

#[test]
fn task_spans_follow_the_nursery_tree() {
    let (s, counts) = traced_run(3);
    let mut tree: Vec<(&str, &str, Option<&str>)> =
        s.spans.iter().map(|sp| (sp.kind, sp.name.as_str(), name_of(&s, sp.parent))).collect();
    tree.sort();
    assert_eq!(
        tree,
        vec![
            ("outer", "outer", None),
            ("task", "<main>", Some("outer")), // the span current when the run started
            ("task", "a", Some("<main>")),
            ("task", "a1", Some("a")),
            ("task", "b", Some("<main>")),
            ("task", "b1", Some("b")),
        ]
    );
    assert_eq!(counts.spawned.get(), 5);
}

#[test]
fn task_spans_are_entered_once_per_step_and_closed_at_exit() {
    let (s, counts) = traced_run(5);
    let tasks: Vec<&SpanRec> = s.spans.iter().filter(|sp| sp.kind == "task").collect();
    assert_eq!(tasks.len(), 5);
    let enters: u32 = tasks.iter().map(|sp| sp.enters).sum();
    assert_eq!(enters, counts.steps.get());
    for sp in &tasks {
        assert_eq!(sp.enters, sp.exits, "{sp:?}");
        assert!(sp.enters >= 1, "{sp:?}");
        assert!(sp.closed, "{sp:?} still open after the run");
    }
    // Each grandchild: a step to start sleeping, one after the wake-up.
    for name in ["a1", "b1"] {
        assert_eq!(tasks.iter().find(|sp| sp.name == name).unwrap().enters, 2, "{name}");
    }
}

#[test]
fn scheduling_and_io_waits_are_recorded_as_events() {
    let (s, counts) = traced_run(7);
    let scheduled: Vec<Option<&str>> =
        s.events.iter().filter(|(m, _)| m == "scheduled").map(|(_, p)| name_of(&s, *p)).collect();
    assert_eq!(scheduled.len() as u32, counts.scheduled.get());
    // Each one inside the span of the task scheduled: each task at least
    // once (at spawn), the sleepers again when their sleep ends.
    for name in ["<main>", "a", "b"] {
        assert!(scheduled.contains(&Some(name)), "{name}: {scheduled:?}");
    }
    for name in ["a1", "b1"] {
        assert_eq!(scheduled.iter().filter(|p| **p == Some(name)).count(), 2, "{name}: {scheduled:?}");
    }
    assert!(counts.io_waits.get() >= 1, "the loop waits for I/O (with a zero timeout) before a jump");
    let waits = s.events.iter().filter(|(m, _)| m == "io wait").count() as u32;
    let done = s.events.iter().filter(|(m, _)| m == "io wait done").count() as u32;
    assert_eq!((waits, done), (counts.io_waits.get(), counts.io_waits.get()));
    // Between steps, so under the span current outside the run.
    assert!(s.events.iter().filter(|(m, _)| m.starts_with("io wait")).all(|(_, p)| name_of(&s, *p) == Some("outer")));
}
