//! Pseudo-terminals for `kubectl exec -t` in the `process` runtime: a pty pair whose follower
//! side becomes the exec'd process's controlling terminal and stdio, and whose leader side the
//! agent reads (output) and writes (input) without blocking a thread.
//!
//! Reading the leader after the last follower descriptor closed fails with `EIO` on Linux;
//! [`LeaderReader`] turns that into the end of the stream.

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::pipe;

use super::TerminalSize;

/// A newly opened pty: the leader (agent side) and follower (process side).
pub struct Pty {
    pub leader: OwnedFd,
    pub follower: OwnedFd,
}

impl Pty {
    pub fn open() -> std::io::Result<Pty> {
        let leader = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        rustix::pty::grantpt(&leader)?;
        rustix::pty::unlockpt(&leader)?;
        let name = rustix::pty::ptsname(&leader, Vec::new())?;
        let follower =
            rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY, Mode::empty())?;
        rustix::io::ioctl_fionbio(&leader, true)?;
        Ok(Pty { leader, follower })
    }
}

/// A command that runs `program` as a session leader whose controlling terminal is its stdin
/// (the follower), as a terminal session needs: util-linux's `setsid --ctty`, since the
/// workspace forbids the `unsafe` a `pre_exec` hook would take.
pub fn terminal_session(program: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("setsid");
    command.arg("--ctty").arg("--").arg(program);
    command
}

/// Applies a terminal size to the pty.
pub fn resize(leader: impl AsFd, size: TerminalSize) -> std::io::Result<()> {
    let winsize = rustix::termios::Winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(leader, winsize)?;
    Ok(())
}

/// The leader's output, ending (instead of failing) once the process side has closed.
pub struct LeaderReader(pipe::Receiver);

impl LeaderReader {
    /// Must be called inside a Tokio runtime; `fd` must be non-blocking.
    pub fn new(fd: OwnedFd) -> std::io::Result<LeaderReader> {
        Ok(LeaderReader(pipe::Receiver::from_owned_fd_unchecked(fd)?))
    }
}

impl AsyncRead for LeaderReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(error))
                if error.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) =>
            {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// The leader's input side.
pub fn leader_writer(fd: OwnedFd) -> std::io::Result<pipe::Sender> {
    pipe::Sender::from_owned_fd_unchecked(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_process_on_the_pty_sees_a_terminal_of_the_size_set_and_its_output_ends() {
        let pty = Pty::open().unwrap();
        resize(&pty.leader, TerminalSize { width: 91, height: 17 }).unwrap();
        let mut command = terminal_session("sh");
        command.args(["-c", "read line; stty size; test -t 0 && echo tty:$line"]);
        command.stdin(pty.follower.try_clone().unwrap());
        command.stdout(pty.follower.try_clone().unwrap());
        command.stderr(pty.follower.try_clone().unwrap());
        let mut child = command.spawn().unwrap();
        // Every follower descriptor but the child's must close for the output to end.
        drop(command);
        drop(pty.follower);
        let mut writer = leader_writer(pty.leader.try_clone().unwrap()).unwrap();
        let mut reader = LeaderReader::new(pty.leader).unwrap();
        writer.write_all(b"yes\n").await.unwrap();
        let mut output = String::new();
        reader.read_to_string(&mut output).await.unwrap();
        assert!(child.wait().await.unwrap().success());
        assert!(output.contains("17 91"), "{output:?}");
        assert!(output.contains("tty:yes"), "{output:?}");
    }
}
