//! Just enough of the Chrome DevTools Protocol to drive a page like a person: open it, wait
//! for something to show, click at a point, read the DOM, take a screenshot.
//!
//! Chromium runs with `--remote-debugging-pipe`: it reads commands from its fd 3 and writes
//! replies and events to its fd 4, each a JSON text ended by a NUL byte. No port, no
//! WebSocket. `sh` puts our pipes there (`exec chromium ... 3<&0 4>&1`), so the child is
//! Chromium itself and is stopped by its own pid.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Result;

/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Browser::wait_for`] asks again.
const POLL: Duration = Duration::from_millis(100);

/// A headless Chromium with one page open, driven over the pipe.
pub(super) struct Browser {
    child: Option<Child>,
    commands: ChildStdin,
    replies: Receiver<Value>,
    next_id: u64,
    /// The page's protocol session (`Target.attachToTarget` with `flatten`).
    page: Option<String>,
    log: PathBuf,
}

impl Browser {
    /// Starts `chromium` with `flags`, its profile in `profile`, its stderr in `log`.
    pub(super) fn launch(
        chromium: &Path,
        flags: &[&str],
        profile: &Path,
        log: &Path,
    ) -> Result<Browser> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(chromium)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--remote-debugging-pipe")
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(log)?);
        println!("$ {} (DevTools over a pipe)", super::render(&cmd));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", chromium.display()))?;
        let (Some(commands), Some(events)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("chromium started without its pipes".into());
        };
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for message in BufReader::new(events).split(0) {
                let Ok(message) = message else { break };
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && sender.send(value).is_err()
                {
                    break;
                }
            }
        });
        Ok(Browser {
            child: Some(child),
            commands,
            replies,
            next_id: 0,
            page: None,
            log: log.to_path_buf(),
        })
    }

    /// Opens `url` in a new page of `width` x `height` CSS pixels; later calls go to it.
    pub(super) fn open(&mut self, url: &str, width: u32, height: u32) -> Result<()> {
        let target = self.send("Target.createTarget", json!({ "url": "about:blank" }), None)?;
        let target = target["targetId"]
            .as_str()
            .ok_or("Target.createTarget returned no targetId")?
            .to_owned();
        let attached = self.send(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
            None,
        )?;
        let page = attached["sessionId"]
            .as_str()
            .ok_or("Target.attachToTarget returned no sessionId")?
            .to_owned();
        self.page = Some(page);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        self.call("Page.navigate", json!({ "url": url }))?;
        Ok(())
    }

    /// The value of a JavaScript expression in the page (promises awaited); `null` for
    /// `undefined`. A thrown exception is an error.
    pub(super) fn eval(&mut self, expression: &str) -> Result<Value> {
        let reply = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = reply.get("exceptionDetails") {
            let text = exception["exception"]["description"]
                .as_str()
                .or_else(|| exception["text"].as_str())
                .unwrap_or("an exception");
            return Err(format!("the page threw {text} evaluating `{expression}`").into());
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluates `expression` until it is truthy (not `null`, `false`, `0` or `""`) and
    /// returns that value; an error naming `what` after `timeout`.
    pub(super) fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression)?;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("waited {timeout:?} for {what}; it did not come").into());
            }
            std::thread::sleep(POLL);
        }
    }

    /// A left click at `(x, y)` (CSS pixels from the viewport's top left), as a mouse makes
    /// it: move, press, release.
    pub(super) fn click(&mut self, x: f64, y: f64) -> Result<()> {
        for (kind, buttons) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons,
                        "clickCount": 1 }),
            )?;
        }
        Ok(())
    }

    /// The viewport as a PNG.
    pub(super) fn screenshot(&mut self) -> Result<Vec<u8>> {
        let reply = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let data = reply["data"]
            .as_str()
            .ok_or("Page.captureScreenshot returned no data")?;
        base64_decode(data).ok_or_else(|| "Page.captureScreenshot returned bad base64".into())
    }

    /// Asks Chromium to quit and waits for it (10 s, then SIGKILL by pid).
    pub(super) fn close(mut self) -> Result<()> {
        // Chromium may quit before its reply is read: only whether it quits counts.
        let _ = self.send("Browser.close", json!({}), None);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "chromium (pid {}) did not quit within 10 s; killed",
                    child.id()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command to the page.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let page = self
            .page
            .clone()
            .ok_or("no page is open (call Browser::open first)")?;
        self.send(method, params, Some(&page))
    }

    /// Sends one command and waits for its reply (events in between are dropped).
    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .map_err(|e| format!("cannot send {method} to chromium ({e}):\n{}", self.log()))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = match self.replies.recv_timeout(left) {
                Ok(reply) => reply,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "chromium did not answer {method} within \
                                        {COMMAND_TIMEOUT:?}"
                    )
                    .into());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("chromium quit during {method}:\n{}", self.log()).into());
                }
            };
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{method} failed: {error}").into());
            }
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Standard base64 (with or without padding); `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            base64_decode("iVBORw0KGgo=").as_deref(),
            Some(&b"\x89PNG\r\n\x1a\n"[..])
        );
        assert_eq!(base64_decode("a*b"), None);
    }
}
