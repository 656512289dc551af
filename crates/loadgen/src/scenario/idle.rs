//! `idle`: connect N clients and hold them, answering pings. Measures
//! connect cost and, with `--server-pid`, the server's RSS per connection.

use crate::cli::Args;
use crate::fleet::{Fleet, Role};
use crate::report::{Report, Window};

pub(super) async fn run(args: &Args, threads: usize) -> anyhow::Result<Report> {
    let fleet = Fleet::new(args, 0, 1)?;
    let setup = super::connect(args, &fleet, |_| Role { room: None, publisher: false }).await;
    let window = Window::open(&args.server_pid);
    super::hold(&fleet, args.duration(), "hold").await;
    let measured = window.close();
    let report = super::report(args, threads, &fleet, &setup, &measured);
    fleet.shutdown(setup.tasks).await;
    Ok(report)
}
