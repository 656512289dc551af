//! `switchboard`: the one binary. With no subcommand it runs standalone;
//! `switchboard gateway` and `switchboard router` run the cluster roles
//! (`router`: [`router_role`]; the gateway role is not wired yet).

mod admin;
mod fixture;
mod gateway_role;
mod router_role;
mod settings;
mod standalone;
mod telemetry;
mod units;

use clap::Parser;
use settings::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(error) = telemetry::init_logs(&cli.settings.log, &cli.settings.log_format) {
        eprintln!("switchboard: {error:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None | Some(Command::Standalone) => standalone::run(cli.settings).await,
            Some(Command::Fixture { suite }) => fixture::run(cli.settings, &suite).await,
            Some(Command::Gateway) => gateway_role::run(cli.settings).await,
            Some(Command::Router) => router_role::run(cli.settings).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
