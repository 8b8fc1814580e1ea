//! The stop signals of every long-running command (`kiln run`, `build`,
//! `test`, `serve`): SIGINT (Ctrl-C) and SIGTERM (`docker stop`, systemd,
//! `kill`) mean the same thing — cancel, clean up (test containers, partial
//! builds), record the run as `cancelled` — so a service manager's stop never
//! leaves a container behind the way the default SIGTERM exit (143) did.

/// Completes on the first SIGINT or SIGTERM. If a handler cannot be
/// installed, that signal keeps its default action.
pub async fn requested() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
