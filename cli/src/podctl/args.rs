//! `podctl`'s flags, named as kubectl names them. Flags kubectl has and `podctl` does not are
//! not declared, so using one fails with clap's "unexpected argument" error instead of being
//! ignored.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// podctl: a kubectl-style client for Skiff (and any Kubernetes API server).
#[derive(Parser, Debug)]
#[command(name = "podctl", version)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace scope for this request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Display one or many resources.
    Get(GetArgs),
    /// Show details of a specific resource or group of resources.
    Describe(DescribeArgs),
    /// Create resources from files or stdin.
    Create(FileArgs),
    /// Apply a configuration to resources by file name or stdin (client-side apply).
    Apply(FileArgs),
    /// Delete resources by file names, stdin, resources and names, or by label selector.
    Delete(DeleteArgs),
    /// Edit a resource in $KUBE_EDITOR or $EDITOR and replace it on the server.
    Edit(EditArgs),
    /// Update fields of a resource with a strategic merge, JSON merge or JSON patch.
    Patch(PatchArgs),
    /// Update the labels on a resource.
    Label(MetadataArgs),
    /// Update the annotations on a resource.
    Annotate(MetadataArgs),
    /// Set a new size for a deployment, replica set or other scalable resource.
    Scale(ScaleArgs),
    /// Print the supported API resources on the server.
    ApiResources(ApiResourcesArgs),
    /// Get the documentation of a resource and its fields (from the server's OpenAPI v3).
    Explain(ExplainArgs),
    /// Modify kubeconfig files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// TYPE[,TYPE...] [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing/getting the requested object, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Label selector to filter on (`app=web`, `tier in (a,b)`, `!canary`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector to filter on (`metadata.name=web`, `status.phase!=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List the requested objects across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Do not print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Treat "resource not found" as a successful retrieval.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// TYPE [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Label selector to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Describe the matching objects across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Args, Debug)]
pub struct FileArgs {
    /// Files, directories (their .json, .yaml and .yml files) or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// TYPE NAME... or TYPE/NAME...
    pub resources: Vec<String>,
    /// Files, directories or `-` naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    /// Delete the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete all objects of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Treat "resource not found" as a successful delete.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait for the objects to be gone before returning.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
        action = clap::ArgAction::Set)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PatchArgs {
    /// TYPE NAME or TYPE/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The patch to apply (JSON or YAML).
    #[arg(short = 'p', long, required = true)]
    pub patch: String,
    /// The type of patch: strategic, merge or json.
    #[arg(long = "type", default_value = "strategic")]
    pub patch_type: String,
}

#[derive(Args, Debug)]
pub struct MetadataArgs {
    /// TYPE NAME KEY=VAL... KEY-... (or TYPE/NAME KEY=VAL...).
    #[arg(required = true)]
    pub arguments: Vec<String>,
    /// Allow existing keys to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// TYPE NAME... or TYPE/NAME...
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long, required = true)]
    pub replicas: i32,
}

#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// Output format: wide or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Do not print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Only namespaced (true) or only cluster-scoped (false) resources.
    #[arg(long)]
    pub namespaced: Option<bool>,
    /// Only resources in this API group (`""` for the core group).
    #[arg(long)]
    pub api_group: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// TYPE or TYPE.FIELD.SUBFIELD...
    pub path: String,
    /// Print the fields of fields, recursively.
    #[arg(long)]
    pub recursive: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Display merged kubeconfig settings (secrets omitted unless --raw).
    View(ConfigViewArgs),
    /// Describe one or many contexts.
    GetContexts(GetContextsArgs),
    /// Set the current-context in a kubeconfig file.
    UseContext(UseContextArgs),
    /// Display the current-context.
    CurrentContext,
}

#[derive(Args, Debug)]
pub struct ConfigViewArgs {
    /// Display raw byte data and sensitive data.
    #[arg(long)]
    pub raw: bool,
    /// Remove all information not used by the current context.
    #[arg(long)]
    pub minify: bool,
}

#[derive(Args, Debug)]
pub struct GetContextsArgs {
    /// Only these contexts.
    pub names: Vec<String>,
    /// Output format: name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Do not print headers.
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Args, Debug)]
pub struct UseContextArgs {
    pub name: String,
}
