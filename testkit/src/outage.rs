//! A loopback TCP proxy in front of a real server that can be taken down and brought back:
//! an outage of a service (moto) that has none of its own that keeps its state. While it
//! is down, open connections are cut and new ones are closed at once, as a server that
//! went away does; the server behind it, and what it holds, is untouched.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Outage {
    down: watch::Sender<bool>,
    /// `http://127.0.0.1:<port>`: the endpoint to give clients instead of the server's.
    pub endpoint: String,
}

impl Outage {
    /// Proxies to `target` (`host:port`, or an `http://` endpoint).
    pub async fn start(target: &str) -> Outage {
        let target = target.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (down, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: the connection closes at once
                }
                tokio::spawn(forward(client, target.clone(), watching.clone()));
            }
        });
        Outage {
            down,
            endpoint: format!("http://{addr}"),
        }
    }

    /// Down (`true`): every connection is cut; up (`false`): connections go through again.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

async fn forward(mut client: TcpStream, target: String, mut down: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(&target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = down.wait_for(|d| *d) => {}
    }
}
