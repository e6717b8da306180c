//! A pod's status as the kubelet reports it, computed from what the worker observed (pure):
//! container states with `lastState` and restart counts, the phase by the kubelet's
//! `getPhase` rules, and the conditions PodReadyToStartContainers, Initialized, Ready,
//! ContainersReady and PodScheduled, each keeping its `lastTransitionTime` until its status
//! changes.

use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{ContainerState, ContainerStatus};

/// Why a container is held back (a waiting reason and message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

impl Waiting {
    pub fn new(reason: &str, message: Option<String>) -> Waiting {
        Waiting { reason: reason.to_string(), message }
    }
}

/// What the worker knows of one container of the spec.
#[derive(Clone, Debug)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    /// The newest container (highest attempt) and the one before it.
    pub latest: Option<ContainerStatus>,
    pub previous: Option<ContainerStatus>,
    pub waiting: Option<Waiting>,
    pub ready: bool,
    pub started: bool,
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    pub init: &'a [ContainerView],
    pub containers: &'a [ContainerView],
    pub restart_policy: &'a str,
    /// The runtime's name: container ids are reported as `<runtime>://<id>`.
    pub runtime: &'a str,
    pub host_ip: &'a str,
    pub pod_ip: Option<&'a str>,
    pub start_time: Timestamp,
    /// The status the API server has (transition times, PodScheduled, qosClass).
    pub previous: Option<&'a PodStatus>,
    pub sandbox_ready: bool,
    pub now: Timestamp,
}

fn terminated(status: &ContainerStatus, runtime: &str) -> Option<ContainerStateTerminated> {
    match &status.state {
        ContainerState::Exited { started_at, finished_at, exit_code, reason, message, signal } => {
            Some(ContainerStateTerminated {
                container_id: Some(format!("{runtime}://{}", status.id)),
                exit_code: *exit_code,
                finished_at: Some(Time(*finished_at)),
                message: message.clone(),
                reason: Some(reason.clone()),
                signal: *signal,
                started_at: started_at.map(Time),
            })
        }
        _ => None,
    }
}

fn waiting_state(waiting: &Waiting) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(waiting.reason.clone()),
            message: waiting.message.clone(),
        }),
        ..ApiState::default()
    }
}

/// One container's status; `default_waiting` is its reason before it ever ran.
pub fn container_status(
    view: &ContainerView,
    runtime: &str,
    default_waiting: &str,
) -> ApiContainerStatus {
    let last_of = |status: Option<&ContainerStatus>| ApiState {
        terminated: status.and_then(|s| terminated(s, runtime)),
        ..ApiState::default()
    };
    let fallback = Waiting::new(default_waiting, None);
    let (state, last_state, running) = match &view.latest {
        None => {
            (waiting_state(view.waiting.as_ref().unwrap_or(&fallback)), ApiState::default(), false)
        }
        Some(latest) => match &latest.state {
            ContainerState::Created => (
                waiting_state(&Waiting::new("ContainerCreating", None)),
                last_of(view.previous.as_ref()),
                false,
            ),
            ContainerState::Running { started_at } => (
                ApiState {
                    running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }),
                    ..ApiState::default()
                },
                last_of(view.previous.as_ref()),
                true,
            ),
            ContainerState::Exited { .. } => match &view.waiting {
                Some(waiting) => (waiting_state(waiting), last_of(Some(latest)), false),
                None => (
                    ApiState { terminated: terminated(latest, runtime), ..ApiState::default() },
                    last_of(view.previous.as_ref()),
                    false,
                ),
            },
        },
    };
    ApiContainerStatus {
        name: view.name.clone(),
        image: view.image.clone(),
        image_id: view.image.clone(),
        container_id: view.latest.as_ref().map(|l| format!("{runtime}://{}", l.id)),
        ready: running && view.ready,
        started: Some(running && view.started),
        restart_count: view.latest.as_ref().map_or(0, |l| l.attempt as i32),
        state: Some(state),
        last_state: Some(last_state),
        ..ApiContainerStatus::default()
    }
}

fn exit_code(state: &Option<ApiState>) -> Option<i32> {
    state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// The kubelet's `getPhase`.
pub fn phase(
    init: &[ApiContainerStatus],
    containers: &[ApiContainerStatus],
    restart_policy: &str,
) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    for status in init {
        let state = status.state.as_ref();
        if state.is_some_and(|s| s.running.is_some()) {
            pending_init += 1;
        } else if let Some(code) = exit_code(&status.state) {
            if code != 0 {
                failed_init += 1;
            }
        } else if state.is_some_and(|s| s.waiting.is_some()) {
            match exit_code(&status.last_state) {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in containers {
        let state = status.state.as_ref();
        if state.is_some_and(|s| s.running.is_some()) {
            running += 1;
        } else if let Some(code) = exit_code(&status.state) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if exit_code(&status.last_state).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    let any_started = running > 0 || stopped > 0;
    if (pending_init > 0 && !any_started) || waiting > 0 {
        return "Pending";
    }
    match () {
        _ if running > 0 => "Running",
        _ if stopped > 0 && restart_policy == "Always" => "Running",
        _ if stopped > 0 && stopped == succeeded => "Succeeded",
        _ if stopped > 0 && restart_policy == "Never" => "Failed",
        _ if stopped > 0 => "Running",
        _ => "Pending",
    }
}

fn condition(
    previous: Option<&PodStatus>,
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let before = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|all| all.iter().find(|c| c.type_ == kind));
    let transition = match before {
        Some(before) if before.status == status => before.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: transition,
        last_probe_time: None,
    }
}

fn names(list: Vec<&str>) -> String {
    format!("[{}]", list.join(" "))
}

/// The pod's status.
pub fn pod_status(view: &PodView) -> PodStatus {
    let init: Vec<ApiContainerStatus> =
        view.init.iter().map(|c| container_status(c, view.runtime, "PodInitializing")).collect();
    let init_done = |s: &ApiContainerStatus| exit_code(&s.state) == Some(0);
    let initialized = init.iter().all(init_done);
    let default_waiting = if initialized { "ContainerCreating" } else { "PodInitializing" };
    let containers: Vec<ApiContainerStatus> = view
        .containers
        .iter()
        .map(|c| container_status(c, view.runtime, default_waiting))
        .collect();
    let phase = phase(&init, &containers, view.restart_policy);
    let previous = view.previous;
    let now = view.now;
    let incomplete: Vec<&str> =
        init.iter().filter(|s| !init_done(s)).map(|s| s.name.as_str()).collect();
    let unready: Vec<&str> =
        containers.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
    let completed = phase == "Succeeded";
    let ready = unready.is_empty() && !completed;
    let (ready_reason, ready_message) = match () {
        _ if completed => (Some("PodCompleted"), None),
        _ if ready => (None, None),
        _ => (
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: {}", names(unready))),
        ),
    };
    let mut conditions = vec![
        condition(previous, "PodReadyToStartContainers", view.sandbox_ready, None, None, now),
        if initialized {
            condition(previous, "Initialized", true, None, None, now)
        } else {
            let message = format!("containers with incomplete status: {}", names(incomplete));
            condition(
                previous,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(message),
                now,
            )
        },
        condition(previous, "Ready", ready, ready_reason, ready_message.clone(), now),
        condition(previous, "ContainersReady", ready, ready_reason, ready_message, now),
    ];
    let scheduled = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|all| all.iter().find(|c| c.type_ == "PodScheduled"))
        .cloned()
        .unwrap_or_else(|| condition(None, "PodScheduled", true, None, None, now));
    conditions.push(scheduled);
    let pod_ip = view.pod_ip.map(str::to_string);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(view.host_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: view.host_ip.to_string() }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(Time(view.start_time)),
        container_statuses: Some(containers),
        init_container_statuses: (!init.is_empty()).then_some(init),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerId;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn observed(name: &str, attempt: u32, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            id: ContainerId(format!("u_{name}_{attempt}")),
            pod_uid: "u".into(),
            name: name.into(),
            attempt,
            image: "host".into(),
            spec_hash: String::new(),
            created_at: at(0),
            state,
            log_path: Default::default(),
        }
    }

    fn exited(code: i32) -> ContainerState {
        ContainerState::Exited {
            started_at: Some(at(1)),
            finished_at: at(2),
            exit_code: code,
            reason: if code == 0 { "Completed".into() } else { "Error".into() },
            message: None,
            signal: None,
        }
    }

    fn view(name: &str, latest: Option<ContainerStatus>, ready: bool) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "host".into(),
            latest,
            previous: None,
            waiting: None,
            ready,
            started: ready,
        }
    }

    fn status_of(init: &[ContainerView], containers: &[ContainerView], policy: &str) -> PodStatus {
        pod_status(&PodView {
            init,
            containers,
            restart_policy: policy,
            runtime: "process",
            host_ip: "127.0.0.1",
            pod_ip: Some("127.0.0.1"),
            start_time: at(0),
            previous: None,
            sandbox_ready: true,
            now: at(3),
        })
    }

    fn condition_of(status: &PodStatus, kind: &str) -> String {
        let all = status.conditions.as_ref().unwrap();
        all.iter().find(|c| c.type_ == kind).unwrap().status.clone()
    }

    #[test]
    fn a_running_ready_container_makes_a_running_ready_pod() {
        let running = ContainerState::Running { started_at: at(1) };
        let status = status_of(&[], &[view("c", Some(observed("c", 0, running)), true)], "Always");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition_of(&status, "Ready"), "True");
        assert_eq!(condition_of(&status, "Initialized"), "True");
        let container = &status.container_statuses.unwrap()[0];
        assert!(container.ready);
        assert_eq!(container.container_id.as_deref(), Some("process://u_c_0"));
    }

    #[test]
    fn phases_follow_the_kubelets_rules() {
        let check = |policy: &str, code: i32, expected: &str| {
            let status =
                status_of(&[], &[view("c", Some(observed("c", 0, exited(code))), false)], policy);
            assert_eq!(status.phase.as_deref(), Some(expected), "{policy} exit {code}");
        };
        check("Always", 0, "Running");
        check("OnFailure", 0, "Succeeded");
        check("OnFailure", 1, "Running");
        check("Never", 1, "Failed");
        check("Never", 0, "Succeeded");
        let none = status_of(&[], &[view("c", None, false)], "Always");
        assert_eq!(none.phase.as_deref(), Some("Pending"));
        let waiting = &none.container_statuses.unwrap()[0];
        let reason = waiting.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.clone();
        assert_eq!(reason.as_deref(), Some("ContainerCreating"));
    }

    #[test]
    fn crash_loops_report_waiting_with_the_last_termination() {
        let mut crashing = view("c", Some(observed("c", 3, exited(1))), false);
        crashing.waiting = Some(Waiting::new("CrashLoopBackOff", Some("back-off 40s".into())));
        let status = status_of(&[], &[crashing], "Always");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let container = &status.container_statuses.unwrap()[0];
        assert_eq!(container.restart_count, 3);
        let waiting = container.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = container.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    }

    #[test]
    fn init_containers_hold_the_pod_pending_until_they_succeed() {
        let running = ContainerState::Running { started_at: at(1) };
        let init = [view("setup", Some(observed("setup", 0, running)), false)];
        let status = status_of(&init, &[view("c", None, false)], "Always");
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(condition_of(&status, "Initialized"), "False");
        let waiting = &status.container_statuses.unwrap()[0];
        let reason = waiting.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.clone();
        assert_eq!(reason.as_deref(), Some("PodInitializing"));
        let failed = [view("setup", Some(observed("setup", 0, exited(2))), false)];
        let status = status_of(&failed, &[view("c", None, false)], "Never");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let done = [view("setup", Some(observed("setup", 0, exited(0))), false)];
        let status = status_of(&done, &[view("c", None, false)], "Always");
        assert_eq!(condition_of(&status, "Initialized"), "True");
    }
}
