//! The drivers of `kvctl`'s commands: build the request (pure, in `request`/`txn`), send it
//! (`client`), print the response (pure, in `print`). Each returns a [`Report`] so `main` can
//! write output and exit the way etcdctl does.

use std::io::{BufRead, Read};
use std::time::Instant;

use store::proto::etcdserverpb::cluster_client::ClusterClient;
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use store::proto::etcdserverpb::{
    CompactionRequest, MemberListRequest, RangeRequest, StatusRequest,
};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::args::{Cli, Command, GlobalFlags};
use super::args::{
    CompactionArgs, DelArgs, EndpointCommand, GetArgs, MemberCommand, PutArgs, TxnArgs,
};
use super::client::{self, Client, Target};
use super::failure::{self, Failure};
use super::print::{EndpointHealth, EndpointStatus, Format, Output, Printer};
use super::{golang, maintenance, request, snapshot, txn};

/// What a command leaves behind: its output, and the failure to exit with, if any. Some
/// commands (endpoint status and health) print results and still fail.
#[derive(Debug, Default)]
pub struct Report {
    pub output: Output,
    pub failure: Option<Failure>,
}

impl From<Result<Output, Failure>> for Report {
    fn from(result: Result<Output, Failure>) -> Self {
        match result {
            Ok(output) => Report { output, failure: None },
            Err(failure) => Report { output: Output::default(), failure: Some(failure) },
        }
    }
}

/// etcdctl accepts responses up to 2 GiB; tonic's default 4 MiB limit would fail a large
/// range that etcdctl prints.
fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(usize::MAX)
}

pub async fn run(cli: Cli) -> Report {
    let format = match Format::parse(&cli.global.write_out) {
        Ok(format) => format,
        Err(failure) => return Err(failure).into(),
    };
    let printer = Printer { format, hex: cli.global.hex };
    let client = match Client::new(&cli.global) {
        Ok(client) => client,
        Err(failure) => return Err(failure).into(),
    };
    match cli.command {
        Command::Get(args) => get(&client, printer, &args).await.into(),
        Command::Put(args) => put(&client, printer, &args).await.into(),
        Command::Del(args) => del(&client, printer, &args).await.into(),
        Command::Txn(args) => run_txn(&client, printer, &args).await.into(),
        Command::Compaction(args) => compaction(&client, &args).await.into(),
        Command::Endpoint(EndpointCommand::Status(args)) => {
            endpoint_status(&client, printer, &cli.global, args.cluster).await
        }
        Command::Endpoint(EndpointCommand::Health(args)) => {
            endpoint_health(&client, printer, &cli.global, args.cluster).await
        }
        Command::Member(MemberCommand::List) => member_list(&client, printer).await.into(),
        Command::Member(change) => super::member::run(&client, printer, &change).await.into(),
        Command::Endpoint(EndpointCommand::Hashkv(args)) => {
            maintenance::endpoint_hashkv(&client, printer, &cli.global, &args).await
        }
        Command::Defrag(args) => maintenance::defrag(&client, &cli.global, &args).await,
        Command::MoveLeader(args) => maintenance::move_leader(&client, &args).await.into(),
        Command::Snapshot(command) => snapshot::run(&client, printer, &command).await.into(),
        Command::Lease(command) => super::lease::run(&client, printer, &command).await.into(),
        Command::Watch(args) => super::watch::run(&client, printer, &args).await.into(),
        Command::Alarm(command) => super::alarm::run(&client, printer, &command).await.into(),
        Command::Lock(args) => super::lock::run(&client, printer, &args).await.into(),
        Command::Elect(args) => super::elect::run(&client, printer, &args).await.into(),
    }
}

async fn get(client: &Client, printer: Printer, args: &GetArgs) -> Result<Output, Failure> {
    let request = request::range_request(args)?;
    let response = client.call(|channel| async move { kv(channel).range(request).await }).await?;
    // etcdctl checks these after the request, so a bad combination still reaches the server.
    if args.count_only && printer.format != Format::Fields {
        return Err(Failure::bad_args("--count-only is only for `--write-out=fields`"));
    }
    if args.print_value_only && printer.format != Format::Simple {
        return Err(Failure::bad_args("print-value-only is only for `--write-out=simple`"));
    }
    printer.get(&response, args.print_value_only)
}

async fn put(client: &Client, printer: Printer, args: &PutArgs) -> Result<Output, Failure> {
    let mut stdin = std::io::stdin().lock();
    let request = request::put_request(args, Some(&mut stdin as &mut dyn Read))?;
    let response = client.call(|channel| async move { kv(channel).put(request).await }).await?;
    printer.put(&response)
}

async fn del(client: &Client, printer: Printer, args: &DelArgs) -> Result<Output, Failure> {
    let request = request::delete_request(args)?;
    let response =
        client.call(|channel| async move { kv(channel).delete_range(request).await }).await?;
    printer.del(&response)
}

async fn run_txn(client: &Client, printer: Printer, args: &TxnArgs) -> Result<Output, Failure> {
    if !args.args.is_empty() {
        return Err(Failure::bad_args("txn command does not accept argument"));
    }
    let request = {
        let mut stdin = std::io::stdin().lock();
        let mut stdout = std::io::stdout();
        txn::read_txn(&mut stdin as &mut dyn BufRead, args.interactive, &mut stdout)?
    };
    let response = client.call(|channel| async move { kv(channel).txn(request).await }).await?;
    printer.txn(&response)
}

async fn compaction(client: &Client, args: &CompactionArgs) -> Result<Output, Failure> {
    let [revision] = args.args.as_slice() else {
        return Err(Failure::bad_args("compaction command needs 1 argument"));
    };
    let revision = golang::parse_int(revision, 10).map_err(Failure::error)?;
    let request = CompactionRequest { revision, physical: args.physical };
    client.call(|channel| async move { kv(channel).compact(request).await }).await?;
    // etcdctl prints this whatever the output format.
    Ok(Output {
        stdout: format!("compacted revision {revision}\n").into_bytes(),
        ..Output::default()
    })
}

async fn member_list(client: &Client, printer: Printer) -> Result<Output, Failure> {
    let response = client
        .call(|channel| async move {
            ClusterClient::new(channel).member_list(MemberListRequest::default()).await
        })
        .await?;
    printer.member_list(&response)
}

/// The endpoints `endpoint status|health` visit: the given ones, or with `--cluster` every
/// member's client URLs.
pub(super) async fn endpoint_targets(
    client: &Client,
    global: &GlobalFlags,
    cluster: bool,
) -> Result<Vec<Target>, Failure> {
    if !cluster {
        return Ok(client.targets.clone());
    }
    let members = client
        .call(|channel| async move {
            ClusterClient::new(channel).member_list(MemberListRequest::default()).await
        })
        .await
        .map_err(|failure| {
            let message = failure.message;
            Failure::error(format!(
                "failed to fetch endpoints from etcd cluster member list: {message}"
            ))
        })?;
    let urls: Vec<String> =
        members.members.into_iter().flat_map(|member| member.client_ur_ls).collect();
    Ok(Client::for_endpoints(&urls, global)?.targets)
}

async fn endpoint_status(
    client: &Client,
    printer: Printer,
    global: &GlobalFlags,
    cluster: bool,
) -> Report {
    let targets = match endpoint_targets(client, global, cluster).await {
        Ok(targets) => targets,
        Err(failure) => return Err(failure).into(),
    };
    let mut statuses = Vec::new();
    let mut errors = String::new();
    for target in targets {
        let status = client
            .call_on(std::slice::from_ref(&target), |channel| async move {
                MaintenanceClient::new(channel).status(StatusRequest {}).await
            })
            .await;
        match status {
            Ok(response) => statuses.push(EndpointStatus { endpoint: target.name, response }),
            Err(failure) => errors.push_str(&format!(
                "Failed to get the status of endpoint {} ({})\n",
                target.name, failure.message
            )),
        }
    }
    let any_failed = !errors.is_empty();
    let mut report = Report::from(printer.endpoint_status(&statuses));
    let mut stderr = errors.into_bytes();
    stderr.append(&mut report.output.stderr);
    report.output.stderr = stderr;
    if any_failed && report.failure.is_none() {
        // etcdctl exits 1 without another message once it has named the failed endpoints.
        report.failure = Some(Failure::silent());
    }
    report
}

async fn endpoint_health(
    client: &Client,
    printer: Printer,
    global: &GlobalFlags,
    cluster: bool,
) -> Report {
    let targets = match endpoint_targets(client, global, cluster).await {
        Ok(targets) => targets,
        Err(failure) => return Err(failure).into(),
    };
    // Endpoints are checked concurrently and reported in the order they answer, as etcdctl.
    let mut checks = JoinSet::new();
    for target in targets {
        checks.spawn(health_of(target, client.clone()));
    }
    let mut healths = Vec::new();
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok(health) => healths.push(health),
            Err(error) => {
                return Err(Failure::error(format!("health check failed: {error}"))).into()
            }
        }
    }
    let unhealthy = healths.iter().any(|health| !health.error.is_empty());
    let mut report = Report::from(printer.endpoint_health(&healths));
    if unhealthy && report.failure.is_none() {
        report.failure = Some(Failure::error("unhealthy cluster"));
    }
    report
}

/// etcdctl 3.4's health check: a linearizable get of the key `health`. It goes through
/// consensus, so even "permission denied" proves a working cluster. (etcdctl 3.5 also lists
/// alarms; 3.4 does not, and in etcd listing alarms is itself a Raft proposal.)
async fn health_of(target: Target, client: Client) -> EndpointHealth {
    let started = Instant::now();
    let targets = std::slice::from_ref(&target);
    let checked = tokio::time::timeout(client.command_timeout, async {
        let channel = client::connect(targets, client.dial_timeout).await;
        let request = RangeRequest { key: b"health".to_vec(), ..RangeRequest::default() };
        kv(channel).range(request).await
    })
    .await;
    let took = golang::duration_string(started.elapsed());
    let error = match checked {
        Err(_elapsed) => failure::DEADLINE_EXCEEDED.to_string(),
        Ok(Ok(_)) => String::new(),
        Ok(Err(status)) => match failure::status_message(&status) {
            message if message == failure::PERMISSION_DENIED => String::new(),
            message => message,
        },
    };
    EndpointHealth { endpoint: target.name, healthy: error.is_empty(), took, error }
}
