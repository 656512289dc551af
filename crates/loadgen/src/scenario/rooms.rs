//! `rooms`: N clients in rooms of S (`room-<k>`), each joined with its ack
//! awaited; then P publishers per room send at R msgs/s for D seconds, and
//! every member, sender included, should receive every message of its room.
//! The measuring window is the publishing time plus the drain.

use crate::cli::Args;
use crate::fleet::{Fleet, Phase, Role};
use crate::report::{Report, StepReport, Window};

pub(super) async fn run(args: &Args, threads: usize) -> anyhow::Result<Report> {
    let room_size = args.room_size;
    let rooms = args.clients.div_ceil(room_size);
    let publishers = args.publishers.min(room_size);
    let fleet = Fleet::new(args, rooms, 1)?;
    let setup =
        super::connect(args, &fleet, |i| Role { room: Some(i / room_size), publisher: i % room_size < publishers })
            .await;
    eprintln!("loadgen: {rooms} rooms of {room_size}, {publishers} publishers each at {} msg/s", args.rate);
    let window = Window::open(&args.server_pid);
    let step = fleet.stats.step(0);
    fleet.stats.start_step(0);
    fleet.set_phase(Phase::Publish { rate: args.rate });
    super::hold(&fleet, args.duration(), "publish").await;
    fleet.set_phase(Phase::Pause);
    super::drain(step, args.drain()).await;
    let measured = window.close();
    let publish_s = args.duration;
    let mut report = super::report(args, threads, &fleet, &setup, &measured);
    super::fill_messages(&mut report, step, publish_s);
    report.steps.push(StepReport::new(args.rate, step, publish_s, &measured));
    fleet.shutdown(setup.tasks).await;
    Ok(report)
}
