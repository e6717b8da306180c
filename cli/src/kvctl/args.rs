//! `kvctl`'s command line, spelled as etcdctl 3.4 spells it: global flags anywhere, boolean
//! flags that also take `=true|false` (pflag style), and free positional arguments whose count
//! the commands check themselves so their error messages can match etcdctl's.

use std::ffi::OsString;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use super::golang;
use super::maintenance::{DefragArgs, HashKvArgs, MoveLeaderArgs};
use super::snapshot::SnapshotCommand;

#[derive(Parser, Debug)]
#[command(
    name = "kvctl",
    version,
    about = "A simple command line client for Skiff's store (and etcd): etcdctl-compatible",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalFlags {
    /// gRPC endpoints (comma separated; `host:port` or `http://host:port`)
    #[arg(
        long,
        global = true,
        env = "KVCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long = "write-out", global = true, default_value = "simple")]
    pub write_out: String,
    /// Dial timeout for client connections
    #[arg(long, global = true, default_value = "2s", value_parser = golang::parse_duration)]
    pub dial_timeout: Duration,
    /// Timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, default_value = "5s", value_parser = golang::parse_duration)]
    pub command_timeout: Duration,
    /// Print byte strings as hex encoded strings
    #[arg(
        long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub hex: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(GetArgs),
    /// Puts the given key into the store
    Put(PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(DelArgs),
    /// Txn processes all the requests in one transaction (read from standard input)
    Txn(TxnArgs),
    /// Compacts the event history in etcd
    Compaction(CompactionArgs),
    /// Endpoint related commands
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Membership related commands
    #[command(subcommand)]
    Member(MemberCommand),
    /// Defragments the storage of the members with given endpoints
    Defrag(DefragArgs),
    /// Transfers leadership to another cluster member (refused by Skiff: not supported)
    MoveLeader(MoveLeaderArgs),
    /// Manages snapshots (backups) of the store
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Lease related commands
    #[command(subcommand)]
    Lease(super::lease::LeaseCommand),
    /// Watches events stream on keys or prefixes
    Watch(super::watch::WatchArgs),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(super::alarm::AlarmCommand),
    /// Acquires a named lock
    Lock(super::lock::LockArgs),
    /// Observes and participates in leader election
    Elect(super::elect::ElectArgs),
}

/// `get [options] <key> [range_end]`
#[derive(Args, Debug, Clone, Default)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "", hide_default_value = true)]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "", hide_default_value = true)]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// Get only the keys
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub keys_only: bool,
    /// Get only the count (with `--write-out=fields`, as etcdctl 3.5+)
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub print_value_only: bool,
    /// <key> [range_end]
    #[arg(value_name = "KEY [RANGE_END]")]
    pub args: Vec<OsString>,
}

/// `put [options] <key> <value>` (value from standard input when omitted)
#[derive(Args, Debug, Clone, Default)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub ignore_lease: bool,
    /// <key> [value]
    #[arg(value_name = "KEY [VALUE]")]
    pub args: Vec<OsString>,
}

/// `del [options] <key> [range_end]`
#[derive(Args, Debug, Clone, Default)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub from_key: bool,
    /// <key> [range_end]
    #[arg(value_name = "KEY [RANGE_END]")]
    pub args: Vec<OsString>,
}

/// `txn [options]`: compares, success requests and failure requests from standard input, each
/// section ended by an empty line.
#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(
        short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub interactive: bool,
    /// (none: txn takes no arguments)
    #[arg(hide = true)]
    pub args: Vec<OsString>,
}

/// `compaction [options] <revision>`
#[derive(Args, Debug)]
pub struct CompactionArgs {
    /// Wait for the compaction to physically remove all old revisions
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub physical: bool,
    /// <revision>
    #[arg(value_name = "REVISION", allow_negative_numbers = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(EndpointArgs),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status(EndpointArgs),
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv(HashKvArgs),
}

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(
        long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub cluster: bool,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Lists all members in the cluster
    List,
    /// Adds a member into the cluster
    Add(super::member::MemberAddArgs),
    /// Removes a member from the cluster
    Remove(super::member::MemberIdArgs),
    /// Updates a member in the cluster
    Update(super::member::MemberUpdateArgs),
    /// Promotes a non-voting member in the cluster
    Promote(super::member::MemberIdArgs),
}

/// One request line of `txn` input (`put k v`, `get k --prefix`, `del k`), parsed with the same
/// flags as the top-level commands, as etcdctl does.
#[derive(Parser, Debug)]
#[command(no_binary_name = true, disable_help_subcommand = true, disable_help_flag = true)]
pub enum TxnRequestLine {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_like_pflag() {
        let cli = Cli::parse_from(["kvctl", "get", "--prefix", "foo", "-w", "json", "--hex=false"]);
        let Command::Get(get) = cli.command else { panic!("expected get") };
        assert!(get.prefix);
        assert_eq!(get.args, vec![OsString::from("foo")]);
        assert_eq!(cli.global.write_out, "json");
        assert!(!cli.global.hex);

        let cli = Cli::parse_from(["kvctl", "--endpoints=a:1,http://b:2", "put", "k", "--", "-v"]);
        assert_eq!(cli.global.endpoints, ["a:1", "http://b:2"]);
        let Command::Put(put) = cli.command else { panic!("expected put") };
        assert_eq!(put.args, vec![OsString::from("k"), OsString::from("-v")]);
    }
}
