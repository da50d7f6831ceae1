//! A short tour of trioxide: nurseries, start, cancel scopes, timeouts,
//! shields, error collection and the task tree.
//!
//! Run it with `cargo run --example tour`. It takes about a second of real
//! time (pass `--virtual` to run it on a mock clock in no time at all).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[path = "common/args.rs"]
mod args;

use trioxide::{
    current_time, fail_after, move_on_after, open_nursery, sleep, sleep_forever, task_tree, wait_all_tasks_blocked,
    BoxError, Builder, CancelScope, Cancelled, MockClock, TaskStatus, TooSlow,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Prints a line stamped with the run's clock.
fn say(what: impl std::fmt::Display) {
    println!("[{:>7.3}s] {what}", current_time().as_secs_f64());
}

async fn tour() -> Result<(), BoxError> {
    say("1. A nursery runs its body and children concurrently and waits for all of them.");
    open_nursery(|n| async move {
        for (name, delay) in [("fast", 50), ("slow", 150), ("medium", 100)] {
            n.start_soon_named(name, async move {
                sleep(ms(delay)).await?;
                say(format_args!("   child {name} done after {delay} ms"));
                Ok::<_, BoxError>(())
            })?;
        }
        say("   body returned; the nursery now waits for its children");
        Ok::<_, BoxError>(())
    })
    .await?;

    say("2. `start` waits until a child reports it is ready, and returns what it reports.");
    open_nursery(|n| async move {
        let port = n
            .start(|status: TaskStatus<u16>| async move {
                sleep(ms(20)).await?; // pretend to bind a socket
                status.started(8080);
                sleep(ms(30)).await?; // keeps serving in the nursery
                Ok::<_, BoxError>(())
            })
            .await?;
        say(format_args!("   server child says it listens on port {port}"));
        Ok::<_, BoxError>(())
    })
    .await?;

    say("3. move_on_after gives up quietly; fail_after reports TooSlow.");
    let r = move_on_after(ms(50), async {
        sleep(ms(1000)).await?;
        Ok::<_, Cancelled>("finished")
    })
    .await?;
    say(format_args!("   move_on_after -> {r:?}"));
    let r: Result<(), BoxError> = fail_after(ms(50), async {
        sleep(ms(1000)).await?;
        Ok(())
    })
    .await;
    say(format_args!("   fail_after -> TooSlow? {}", r.is_err_and(|e| e.is::<TooSlow>())));

    say("4. Cancellation is level-triggered: every checkpoint after cancel() reports it.");
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let scope2 = CancelScope::new();
    let inner = scope2.clone();
    let out = scope2
        .run(async move {
            inner.cancel();
            for _ in 0..3 {
                let r = trioxide::checkpoint().await;
                s.borrow_mut().push(r);
            }
            trioxide::checkpoint().await?;
            Ok::<_, Cancelled>(())
        })
        .await?;
    say(format_args!("   three checkpoints saw {:?}; the scope caught it: {out:?}", seen.borrow()));

    say("5. A shield keeps cleanup running while the outside is cancelled.");
    let outer = CancelScope::new();
    let o = outer.clone();
    outer
        .run(async move {
            o.cancel();
            let cleanup = CancelScope::shielded()
                .run(async {
                    sleep(ms(30)).await?; // would be cancelled without the shield
                    Ok::<_, Cancelled>("cleanup finished")
                })
                .await?;
            say(format_args!("   inside a cancelled scope, shielded: {cleanup:?}"));
            trioxide::checkpoint().await?;
            Ok::<_, Cancelled>(())
        })
        .await?;

    say("6. One failing child cancels its siblings; every error is reported.");
    let result = open_nursery(|n| async move {
        n.start_soon_named("sleeper", async {
            sleep_forever().await?;
            Ok::<_, BoxError>(())
        })?;
        n.start_soon_named("broken", async {
            sleep(ms(10)).await?;
            Err::<(), BoxError>("disk on fire".into())
        })?;
        n.start_soon_named("also broken", async {
            sleep(ms(10)).await?;
            Err::<(), BoxError>("network unplugged".into())
        })?;
        Ok::<_, BoxError>(())
    })
    .await;
    match result {
        Err(e) => say(format_args!("   nursery failed with: {e}")),
        Ok(v) => say(format_args!("   unexpected success: {v:?}")),
    }

    say("7. task_tree() shows what every task waits on.");
    open_nursery(|n| async move {
        n.start_soon_named("worker", async {
            sleep_forever().await?;
            Ok::<_, BoxError>(())
        })?;
        wait_all_tasks_blocked().await?;
        for t in task_tree() {
            say(format_args!("   {:?} {:<12} parent={:?} waiting on {:?}", t.id, t.name, t.parent, t.waiting_on));
        }
        n.cancel_scope().cancel();
        Ok::<_, BoxError>(())
    })
    .await?;
    say("Tour over.");
    Ok(())
}

fn main() {
    const FLAGS: &[args::Flag] = &[args::Flag {
        name: "virtual",
        value: "",
        default: "",
        help: "run on a mock clock with autojump: no real waiting",
    }];
    let args = args::Args::parse("tour", "A short tour of trioxide's model.", FLAGS);
    let virtual_time = args.switch("virtual");
    let builder = Builder::new();
    let builder = if virtual_time {
        let clock = MockClock::new();
        clock.set_autojump_threshold(Some(Duration::ZERO));
        builder.clock(clock)
    } else {
        builder
    };
    if let Err(e) = builder.run(tour()) {
        eprintln!("tour failed: {e}");
        std::process::exit(1);
    }
}
