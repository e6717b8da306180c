//! `kvctl member add|remove|update|promote`, as etcdctl 3.4 spells and prints them (simple and
//! json formats); `member list` lives with the other printers.

use clap::Args;
use store::proto::etcdserverpb::cluster_client::ClusterClient;
use store::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
    ResponseHeader,
};

use super::args::MemberCommand;
use super::client::Client;
use super::failure::Failure;
use super::golang;
use super::json;
use super::print::{Format, Output, Printer};

/// `member add <memberName> [options]`
#[derive(Args, Debug)]
pub struct MemberAddArgs {
    /// comma separated peer URLs for the new member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(
        long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub learner: bool,
    #[arg(value_name = "NAME")]
    pub args: Vec<String>,
}

/// `member remove <memberID>`, `member promote <memberID>`
#[derive(Args, Debug)]
pub struct MemberIdArgs {
    #[arg(value_name = "MEMBER_ID")]
    pub args: Vec<String>,
}

/// `member update <memberID> [options]`
#[derive(Args, Debug)]
pub struct MemberUpdateArgs {
    /// comma separated peer URLs for the updated member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    #[arg(value_name = "MEMBER_ID")]
    pub args: Vec<String>,
}

fn member_id(args: &[String], what: &str) -> Result<u64, Failure> {
    let [arg] = args else {
        return Err(Failure::bad_args(format!("member ID is not provided{what}")));
    };
    // etcdctl parses member ids with strconv.ParseUint(arg, 16, 64).
    u64::from_str_radix(arg, 16).map_err(|error| {
        let quoted = golang::quote(arg.as_bytes());
        let reason = match error.kind() {
            std::num::IntErrorKind::PosOverflow => "value out of range",
            _ => "invalid syntax",
        };
        Failure::bad_args(format!(
            "bad member ID arg (strconv.ParseUint: parsing {quoted}: {reason}), expecting ID in Hex"
        ))
    })
}

fn peer_urls(flag: &str) -> Result<Vec<String>, Failure> {
    if flag.is_empty() {
        return Err(Failure::bad_args("member peer urls not provided"));
    }
    Ok(flag.split(',').map(str::to_string).collect())
}

fn cluster_id(header: &Option<ResponseHeader>) -> u64 {
    header.as_ref().map_or(0, |h| h.cluster_id)
}

pub async fn run(
    client: &Client,
    printer: Printer,
    command: &MemberCommand,
) -> Result<Output, Failure> {
    if !matches!(printer.format, Format::Simple | Format::Json) {
        return Err(printer.format.unsupported());
    }
    match command {
        MemberCommand::List => Err(Failure::error("member list is served elsewhere")),
        MemberCommand::Add(args) => add(client, printer, args).await,
        MemberCommand::Remove(args) => {
            let id = member_id(&args.args, "")?;
            let r = client
                .call(|channel| async move {
                    ClusterClient::new(channel).member_remove(MemberRemoveRequest { id }).await
                })
                .await?;
            Ok(changed(printer, "removed from", id, &r.header, &r.members))
        }
        MemberCommand::Update(args) => {
            let id = member_id(&args.args, " with update")?;
            let request = MemberUpdateRequest { id, peer_ur_ls: peer_urls(&args.peer_urls)? };
            let r =
                client
                    .call(|channel| async move {
                        ClusterClient::new(channel).member_update(request).await
                    })
                    .await?;
            Ok(changed(printer, "updated in", id, &r.header, &r.members))
        }
        MemberCommand::Promote(args) => {
            let id = member_id(&args.args, "")?;
            let r = client
                .call(|channel| async move {
                    ClusterClient::new(channel).member_promote(MemberPromoteRequest { id }).await
                })
                .await?;
            Ok(changed(printer, "promoted in", id, &r.header, &r.members))
        }
    }
}

/// `Member <id> <verb> cluster <cluster id>`, with Go's `%16x` (space padded).
fn changed(
    printer: Printer,
    verb: &str,
    id: u64,
    header: &Option<ResponseHeader>,
    members: &[Member],
) -> Output {
    let text = match printer.format {
        Format::Json => json::member_change_response(header, None, members),
        _ => format!("Member {id:16x} {verb} cluster {:16x}", cluster_id(header)),
    };
    Output { stdout: format!("{text}\n").into_bytes(), stderr: Vec::new() }
}

async fn add(client: &Client, printer: Printer, args: &MemberAddArgs) -> Result<Output, Failure> {
    let [name] = args.args.as_slice() else {
        return Err(Failure::bad_args("member name not provided"));
    };
    let urls = peer_urls(&args.peer_urls)?;
    let request = MemberAddRequest { peer_ur_ls: urls.clone(), is_learner: args.learner };
    let r = client
        .call(|channel| async move { ClusterClient::new(channel).member_add(request).await })
        .await?;
    let new_id = r.member.as_ref().map_or(0, |m| m.id);
    if printer.format == Format::Json {
        let text = json::member_change_response(&r.header, r.member.as_ref(), &r.members);
        return Ok(Output { stdout: format!("{text}\n").into_bytes(), stderr: Vec::new() });
    }
    Ok(Output {
        stdout: add_text(name, &urls, new_id, &r.header, &r.members).into_bytes(),
        stderr: Vec::new(),
    })
}

/// etcdctl's text after a member add: the result line, then the environment the new member
/// starts with.
fn add_text(
    name: &str,
    urls: &[String],
    new_id: u64,
    header: &Option<ResponseHeader>,
    members: &[Member],
) -> String {
    let initial_cluster: Vec<String> = members
        .iter()
        .flat_map(|m| {
            let member_name = if m.id == new_id { name } else { m.name.as_str() };
            m.peer_ur_ls.iter().map(move |u| format!("{member_name}={u}"))
        })
        .collect();
    format!(
        "Member {new_id:16x} added to cluster {:16x}\n\nETCD_NAME=\"{name}\"\n\
         ETCD_INITIAL_CLUSTER=\"{}\"\nETCD_INITIAL_ADVERTISE_PEER_URLS=\"{}\"\n\
         ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
        cluster_id(header),
        initial_cluster.join(","),
        urls.join(","),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, url: &str) -> Member {
        Member { id, name: name.into(), peer_ur_ls: vec![url.into()], ..Default::default() }
    }

    #[test]
    fn add_prints_the_new_members_environment() {
        let header = Some(ResponseHeader { cluster_id: 0x36a7e87a8a743962, ..Default::default() });
        let members =
            [member(0x2b4567b6045bdf74, "", "http://b:2380"), member(7, "n1", "http://a:2380")];
        let text = add_text("n2", &["http://b:2380".into()], 0x2b4567b6045bdf74, &header, &members);
        assert_eq!(
            text,
            "Member 2b4567b6045bdf74 added to cluster 36a7e87a8a743962\n\nETCD_NAME=\"n2\"\n\
             ETCD_INITIAL_CLUSTER=\"n2=http://b:2380,n1=http://a:2380\"\n\
             ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://b:2380\"\n\
             ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n"
        );
        let printer = Printer { format: Format::Simple, hex: false };
        let removed = changed(printer, "removed from", 0xabc, &header, &members);
        let expected = "Member              abc removed from cluster 36a7e87a8a743962\n";
        assert_eq!(String::from_utf8(removed.stdout).expect("utf-8"), expected);
    }
}
