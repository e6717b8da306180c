//! `kvctl alarm list|disarm`, as etcdctl 3.4 runs and prints them: `list` asks the
//! Maintenance.Alarm RPC for every alarm; `disarm` lists them and deactivates each one, printing
//! the deactivated alarms. Pure printers for the simple, json, fields and protobuf formats
//! (etcdctl refuses `table` for alarms, after the request).

use clap::{Args, Subcommand};
use prost::Message;
use store::proto::etcdserverpb::alarm_request::AlarmAction;
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use store::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};

use super::client::Client;
use super::failure::Failure;
use super::print::{Format, Output, Printer};

#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm(AlarmArgs),
    /// Lists all alarms
    List(AlarmArgs),
}

/// `alarm list`, `alarm disarm`: no arguments.
#[derive(Args, Debug)]
pub struct AlarmArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

pub async fn run(
    client: &Client,
    printer: Printer,
    command: &AlarmCommand,
) -> Result<Output, Failure> {
    let response = match command {
        AlarmCommand::List(args) => {
            if !args.args.is_empty() {
                return Err(Failure::bad_args("alarm list command accepts no arguments"));
            }
            alarm(client, AlarmAction::Get, &AlarmMember::default()).await?
        }
        AlarmCommand::Disarm(args) => {
            if !args.args.is_empty() {
                return Err(Failure::bad_args("alarm disarm command accepts no arguments"));
            }
            disarm_all(client).await?
        }
    };
    print(printer.format, &response)
}

async fn alarm(
    client: &Client,
    action: AlarmAction,
    member: &AlarmMember,
) -> Result<AlarmResponse, Failure> {
    let request =
        AlarmRequest { action: action as i32, member_id: member.member_id, alarm: member.alarm };
    client.call(|channel| async move { MaintenanceClient::new(channel).alarm(request).await }).await
}

/// clientv3's `AlarmDisarm` for "every alarm": list, then deactivate each; the answer is the
/// deactivated alarms, with no header.
async fn disarm_all(client: &Client) -> Result<AlarmResponse, Failure> {
    let listed = alarm(client, AlarmAction::Get, &AlarmMember::default()).await?;
    let mut disarmed = AlarmResponse::default();
    for member in &listed.alarms {
        let response = alarm(client, AlarmAction::Deactivate, member).await?;
        disarmed.alarms.extend(response.alarms);
    }
    Ok(disarmed)
}

/// Go's name for an `AlarmType` (its number when unknown).
fn alarm_name(alarm: i32) -> String {
    match AlarmType::try_from(alarm) {
        Ok(known) => known.as_str_name().to_string(),
        Err(_) => alarm.to_string(),
    }
}

pub fn print(format: Format, response: &AlarmResponse) -> Result<Output, Failure> {
    let text = match format {
        Format::Simple => response.alarms.iter().map(simple_line).collect::<String>(),
        Format::Json => json(response),
        Format::Fields => fields(response),
        Format::Protobuf => {
            return Ok(Output { stdout: response.encode_to_vec(), stderr: Vec::new() })
        }
        Format::Table => return Err(format.unsupported()),
    };
    Ok(Output { stdout: text.into_bytes(), stderr: Vec::new() })
}

/// `fmt.Printf("%+v\n", alarm)`: the protobuf compact text form, zero fields left out, every
/// field followed by a space.
fn simple_line(member: &AlarmMember) -> String {
    let mut line = String::new();
    if member.member_id != 0 {
        line.push_str(&format!("memberID:{} ", member.member_id));
    }
    if member.alarm != 0 {
        line.push_str(&format!("alarm:{} ", alarm_name(member.alarm)));
    }
    line + "\n"
}

/// Go's `encoding/json` over `pb.AlarmResponse`: every field `omitempty`, the alarm type as
/// its number.
fn json(response: &AlarmResponse) -> String {
    let mut fields = Vec::new();
    if let Some(header) = super::json::header(&response.header) {
        fields.push(format!("\"header\":{header}"));
    }
    if !response.alarms.is_empty() {
        let alarms: Vec<String> = response
            .alarms
            .iter()
            .map(|a| {
                let mut member = Vec::new();
                if a.member_id != 0 {
                    member.push(format!("\"memberID\":{}", a.member_id));
                }
                if a.alarm != 0 {
                    member.push(format!("\"alarm\":{}", a.alarm));
                }
                format!("{{{}}}", member.join(","))
            })
            .collect();
        fields.push(format!("\"alarms\":[{}]", alarms.join(",")));
    }
    format!("{{{}}}\n", fields.join(","))
}

/// etcdctl's fields printer. etcd answers alarms without a header, on which etcdctl 3.4
/// crashes (nil pointer); kvctl prints the missing header as zeros instead.
fn fields(response: &AlarmResponse) -> String {
    let h = response.header.unwrap_or_default();
    let mut out = format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
        h.cluster_id, h.member_id, h.revision, h.raft_term
    );
    for a in &response.alarms {
        out.push_str(&format!("\"MemberID\" : {}\n", a.member_id));
        out.push_str(&format!("\"AlarmType\" : {}\n", alarm_name(a.alarm)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(format: Format, response: &AlarmResponse) -> String {
        String::from_utf8(print(format, response).expect("printable").stdout).expect("utf-8")
    }

    /// Captured from etcdctl 3.4.23 against etcd 3.4.23 with `--quota-backend-bytes=1`.
    #[test]
    fn prints_as_etcdctl() {
        let nospace = AlarmMember { member_id: 2660459196617705112, alarm: 1 };
        let raised = AlarmResponse { header: None, alarms: vec![nospace] };
        assert_eq!(text(Format::Simple, &raised), "memberID:2660459196617705112 alarm:NOSPACE \n");
        assert_eq!(
            text(Format::Json, &raised),
            "{\"alarms\":[{\"memberID\":2660459196617705112,\"alarm\":1}]}\n"
        );
        let protobuf = print(Format::Protobuf, &raised).expect("printable").stdout;
        assert_eq!(protobuf, b"\x12\x0c\x08\x98\x8d\xc7\xce\xb2\xb1\xf6\xf5\x24\x10\x01".to_vec());
        let none = AlarmResponse::default();
        assert_eq!(text(Format::Simple, &none), "");
        assert_eq!(text(Format::Json, &none), "{}\n");
        assert!(print(Format::Protobuf, &none).expect("printable").stdout.is_empty());
        let refused = print(Format::Table, &none).expect_err("table is refused");
        assert_eq!(refused.to_string(), "Error: table not supported as output format");
        assert!(text(Format::Fields, &raised)
            .ends_with("\"MemberID\" : 2660459196617705112\n\"AlarmType\" : NOSPACE\n"));
    }
}
