//! A client for chaos tests: it moves on to the next node when the one it talks to is gone.

use std::time::Duration;

use pyralog_client::{Client, ClientError, ClientOptions};

/// A client that moves on to the next node when the one it talks to stops answering.
#[derive(Debug)]
pub struct RotatingClient {
    urls: Vec<String>,
    options: ClientOptions,
    next: usize,
    current: Option<Client>,
}

impl RotatingClient {
    pub fn new(urls: Vec<String>, options: ClientOptions, start: usize) -> Self {
        RotatingClient {
            urls,
            options,
            next: start,
            current: None,
        }
    }

    /// The current client, or a new one to the first node (from `next` on) that answers;
    /// `None` after a short pause if none does.
    pub async fn get(&mut self) -> Option<Client> {
        if self.current.is_none() {
            for k in 0..self.urls.len() {
                let i = (self.next + k) % self.urls.len();
                if let Ok(c) =
                    Client::connect_with(self.urls[i].clone(), self.options.clone()).await
                {
                    self.next = i;
                    self.current = Some(c);
                    break;
                }
            }
        }
        if self.current.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.current.clone()
    }

    /// `e` came back: without a Pyralog reason the node is gone, so use the next one.
    pub fn failed(&mut self, e: &ClientError) {
        if e.reason().is_none() {
            self.current = None;
            self.next += 1;
        }
    }
}
