//! `kvctl elect <election-name> [proposal]` and `elect -l <election-name>`, as etcdctl 3.4
//! runs them: campaign with the proposal in a session of clientv3's default TTL, print the
//! leader key and value once elected (in the `-w` format of `get`) and lead until SIGINT or
//! SIGTERM, then resign; or, with `--listen`, print every leader in turn until interrupted.

use clap::{ArgAction, Args};

use super::client::Client;
use super::concurrency::{self, SESSION_TTL_SECONDS_DEFAULT};
use super::failure::Failure;
use super::lock::{self, Interrupt};
use super::print::{Output, Printer};

/// `elect [options] <election-name> [proposal]`
#[derive(Args, Debug)]
pub struct ElectArgs {
    /// observation mode
    #[arg(
        short = 'l', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub listen: bool,
    #[arg(value_name = "ELECTION-NAME [PROPOSAL]")]
    pub args: Vec<String>,
}

pub async fn run(client: &Client, printer: Printer, args: &ElectArgs) -> Result<Output, Failure> {
    let (name, proposal) = match args.args.as_slice() {
        [name] => (name, None),
        [name, proposal] => (name, Some(proposal)),
        _ => {
            return Err(Failure::bad_args(
                "elect takes one election name argument and an optional proposal argument",
            ))
        }
    };
    if args.listen {
        return observe(client, printer, name).await.map(|()| Output::default());
    }
    let Some(proposal) = proposal else {
        return Err(Failure::bad_args("no proposal argument but -l not set"));
    };
    campaign(client, printer, name, proposal).await.map(|()| Output::default())
}

/// Prints each leader until interrupted. (etcdctl also starts a session it never uses here;
/// observing needs none.)
async fn observe(client: &Client, printer: Printer, name: &str) -> Result<(), Failure> {
    let mut interrupt = Interrupt::new()?;
    let channel = client.dial().await?;
    let mut print_failure = None;
    let observing =
        concurrency::observe(&channel, name, |leader| match printer.get(leader, false) {
            Ok(output) => {
                output.write_now();
                Ok(())
            }
            Err(failure) => {
                print_failure = Some(failure);
                Err(Failure::silent())
            }
        });
    let observed = tokio::select! {
        observed = observing => observed,
        () = interrupt.recv() => return Ok(()),
    };
    match (observed, print_failure) {
        (_, Some(failure)) => Err(failure),
        // Observing only ends when the store cannot be followed any more.
        (_, None) => Err(Failure::error("elect: observer lost")),
    }
}

async fn campaign(
    client: &Client,
    printer: Printer,
    name: &str,
    proposal: &str,
) -> Result<(), Failure> {
    let mut interrupt = Interrupt::new()?;
    let session = lock::open_session(client, SESSION_TTL_SECONDS_DEFAULT).await?;
    let led = lead(&session, client, printer, name, proposal, &mut interrupt).await;
    lock::close_session(session, client.command_timeout).await;
    led
}

async fn lead(
    session: &concurrency::Session,
    client: &Client,
    printer: Printer,
    name: &str,
    proposal: &str,
    interrupt: &mut Interrupt,
) -> Result<(), Failure> {
    let channel = &session.channel;
    let timeout = client.command_timeout;
    let leadership = tokio::select! {
        elected = concurrency::campaign(session, name, proposal.as_bytes()) => elected?,
        () = interrupt.recv() => {
            // Withdraw the candidacy, as clientv3 does when its campaign is cancelled.
            let key = session.key_under(format!("{name}/").as_bytes());
            let _ = tokio::time::timeout(timeout, concurrency::delete(channel, &key)).await;
            return Err(Failure::error("context canceled"));
        }
    };
    let resign = || async {
        match tokio::time::timeout(timeout, concurrency::resign(channel, &leadership)).await {
            Ok(resigned) => resigned,
            Err(_elapsed) => Err(Failure::deadline_exceeded()),
        }
    };
    let printed = match lock::read_key(channel, &leadership.key).await {
        Ok(held) => printer.get(&held, false),
        Err(failure) => Err(failure),
    };
    match printed {
        Ok(output) => output.write_now(),
        Err(failure) => {
            let _ = resign().await;
            return Err(failure);
        }
    }
    tokio::select! {
        () = interrupt.recv() => resign().await,
        () = session.expired() => Err(Failure::error("elect: session expired")),
    }
}
