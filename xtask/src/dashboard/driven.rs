//! The dashboard driven over the DevTools protocol ([`cdp`](super::cdp)) as a person uses it:
//! the store panel, a click on a session row and the panel that opens, the screenshot with it
//! open, a session full of HTML, the close button.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::cdp::Browser;
use super::{
    CLICKED, HEIGHT, MARKUP_MESSAGE, MARKUP_SESSION, PAGE_TIMEOUT, SESSIONS, WIDTH, request, say,
};
use crate::Result;

/// `GET path` as JSON.
fn get_json(port: u16, path: &str) -> Result<Value> {
    let (status, body) = request(port, "GET", path, "")?;
    if status != 200 {
        return Err(format!("GET {path}: {status} {body}").into());
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON ({e}): {body}").into())
}

/// The page as a person uses it: the store panel, a click on a session row and the panel that
/// opens, the screenshot with it open, a session full of HTML, the close button.
pub(super) fn drive(
    browser: &mut Browser,
    port: u16,
    url: &str,
    screenshot: &Path,
) -> Result<Vec<(bool, String)>> {
    let mut checks = Vec::new();
    browser.open(url, WIDTH, HEIGHT)?;
    browser.wait_for(
        "a row per session",
        &format!(
            "document.querySelectorAll('#rows tr.session').length >= {}",
            SESSIONS.len()
        ),
        PAGE_TIMEOUT,
    )?;
    let store = browser.wait_for(
        "the store panel",
        "(() => { const s = document.getElementById('store'); return s.dataset.loaded && \
         { backend: s.dataset.backend, fallback: s.dataset.fallback, text: s.innerText }; })()",
        PAGE_TIMEOUT,
    )?;
    let text = store["text"].as_str().unwrap_or_default();
    checks.push((
        store["backend"] == "memory"
            && store["fallback"] == "none"
            && text.contains("USE_REDIS=false")
            && text.contains("not configured"),
        format!("the store panel shows the memory store and no Redis: {text:?}"),
    ));
    let closed = browser.eval("document.getElementById('detail').hidden")?;
    checks.push((
        closed == Value::Bool(true),
        "no session panel is open before a click".to_owned(),
    ));

    let attempts = open_by_click(browser, CLICKED)?;
    let expected = get_json(port, &format!("/sessions/{CLICKED}"))?;
    checks.extend(detail_checks(&panel(browser)?, &expected, attempts));

    fs::write(screenshot, browser.screenshot()?)
        .map_err(|e| format!("cannot write {}: {e}", screenshot.display()))?;

    // A conversation whose text is HTML: shown as typed, never parsed.
    say(port, MARKUP_SESSION, MARKUP_MESSAGE)?;
    browser.wait_for(
        "the new session's row",
        &format!("document.querySelector('#rows tr.session[data-id=\"{MARKUP_SESSION}\"]')"),
        PAGE_TIMEOUT,
    )?;
    open_by_click(browser, MARKUP_SESSION)?;
    let markup = browser.eval(
        "({ ran: window.__xss === undefined ? null : window.__xss, \
            elements: document.querySelectorAll('#detail img, #detail script, #detail b').length, \
            first: (document.querySelector('#d-turns .turn .content') || {}).textContent })",
    )?;
    checks.push((
        markup["ran"].is_null()
            && markup["elements"] == 0
            && markup["first"].as_str() == Some(MARKUP_MESSAGE),
        format!("a message of HTML shows as text and runs nothing: {markup}"),
    ));

    let close = centre_of(browser, "#d-close")?;
    browser.click(close.0, close.1)?;
    let after = browser.eval(
        "({ hidden: document.getElementById('detail').hidden, hash: location.hash, \
            selected: document.querySelectorAll('#rows tr.selected').length })",
    )?;
    checks.push((
        after["hidden"] == true && after["hash"] == "" && after["selected"] == 0,
        format!("the close button closes the panel: {after}"),
    ));
    Ok(checks)
}

/// Clicks the row of session `id` until its panel has loaded (a refresh that replaces the
/// rows between press and release swallows a click, as it would a person's); how many clicks
/// it took.
fn open_by_click(browser: &mut Browser, id: &str) -> Result<u32> {
    for attempt in 1..=3 {
        let (x, y) = centre_of(
            browser,
            &format!("#rows tr.session[data-id=\"{id}\"] td.id"),
        )?;
        browser.click(x, y)?;
        let loaded = browser.wait_for(
            &format!("the panel of {id}"),
            &format!("document.getElementById('detail').dataset.loaded === '{id}'"),
            Duration::from_secs(3),
        );
        if loaded.is_ok() {
            return Ok(attempt);
        }
    }
    Err(format!("three clicks on the row of {id} opened no panel").into())
}

/// The viewport coordinates of the centre of the element `selector` names, scrolled into view.
fn centre_of(browser: &mut Browser, selector: &str) -> Result<(f64, f64)> {
    let selector = serde_json::to_string(selector)?;
    let rect = browser.eval(&format!(
        "(() => {{ const e = document.querySelector({selector}); if (!e) return null; \
         e.scrollIntoView({{ block: 'center' }}); const r = e.getBoundingClientRect(); \
         return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
    ))?;
    match (rect[0].as_f64(), rect[1].as_f64()) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => Err(format!("no element {selector} on the page").into()),
    }
}

/// What the open panel shows: title, facts by name, turns, the selected row, the hash.
fn panel(browser: &mut Browser) -> Result<Value> {
    browser.eval(
        "(() => { const d = document.getElementById('detail'); return { \
           hidden: d.hidden, \
           title: document.getElementById('d-title').textContent, \
           facts: Object.fromEntries([...d.querySelectorAll('dd[data-fact]')] \
                    .map(f => [f.dataset.fact, f.textContent])), \
           turns: [...d.querySelectorAll('#d-turns .turn')].map(t => \
                    ({ role: t.dataset.role, label: t.querySelector('.role').textContent, \
                       content: t.querySelector('.content').textContent })), \
           json: document.getElementById('d-json').textContent, \
           selected: [...document.querySelectorAll('#rows tr.selected')].map(r => r.dataset.id), \
           hash: location.hash }; })()",
    )
}

/// The panel of [`CLICKED`] against the seeded conversation and `GET /sessions/{id}`.
fn detail_checks(panel: &Value, expected: &Value, clicks: u32) -> Vec<(bool, String)> {
    let messages = SESSIONS
        .iter()
        .find(|(id, _, _)| *id == CLICKED)
        .map_or(&[][..], |(_, messages, _)| *messages);
    let turns = panel["turns"].as_array().cloned().unwrap_or_default();
    let history = expected["conversation_history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let users: Vec<&str> = turns
        .iter()
        .filter(|t| t["role"] == "user")
        .filter_map(|t| t["content"].as_str())
        .collect();
    let roles_alternate = turns.iter().enumerate().all(|(i, t)| {
        let (role, label) = if i % 2 == 0 {
            ("user", "user")
        } else {
            ("assistant", "agent")
        };
        t["role"] == role && t["label"] == label
    });
    let same_text = turns.len() == history.len()
        && turns
            .iter()
            .zip(&history)
            .all(|(t, h)| t["content"] == h["content"] && t["role"] == h["role"]);
    let fact = |name: &str| panel["facts"][name].as_str().unwrap_or_default().to_owned();
    let ttl = fact("ttl");
    let ttl_secs = ttl
        .strip_suffix(" left")
        .and_then(|t| t.split_once("m "))
        .and_then(|(m, s)| {
            let s = s.strip_suffix('s')?;
            Some(m.parse::<u64>().ok()? * 60 + s.parse::<u64>().ok()?)
        });
    let decoded: Option<Value> = panel["json"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok());
    let click_note = if clicks == 1 {
        String::new()
    } else {
        format!(" (after {clicks} clicks)")
    };
    vec![
        (
            panel["hidden"] == false
                && panel["title"] == CLICKED
                && panel["selected"] == json!([CLICKED])
                && panel["hash"] == format!("#session={CLICKED}"),
            format!(
                "a click on the row of `{CLICKED}` opens its panel, marks the row and links \
                 it as #session={CLICKED}{click_note}"
            ),
        ),
        (
            turns.len() == 2 * messages.len() && users == messages && roles_alternate,
            format!(
                "the panel shows the conversation: {} turns, each message of `{CLICKED}` in \
                 order, user and agent taking turns",
                2 * messages.len()
            ),
        ),
        (
            same_text,
            "every turn is the text GET /sessions/{id} holds".to_owned(),
        ),
        (
            fact("state") == expected["state"].as_str().unwrap_or("?")
                && fact("attempt").contains(&format!(
                    "{}/{}",
                    expected["current_attempt"], expected["max_attempts"]
                )),
            format!(
                "the panel shows state `{}` and attempt {}/{}",
                expected["state"].as_str().unwrap_or("?"),
                expected["current_attempt"],
                expected["max_attempts"]
            ),
        ),
        (
            expected["version"]
                .as_u64()
                .is_some_and(|v| fact("version") == v.to_string()),
            format!(
                "the panel shows version {} (it says {:?})",
                expected["version"],
                fact("version")
            ),
        ),
        (
            ttl_secs.is_some_and(|t| {
                expected["ttl"]
                    .as_u64()
                    .is_some_and(|e| t <= e + 5 && t + 30 >= e)
            }),
            format!(
                "the panel shows the TTL left (it says {ttl:?}, the API {} s)",
                expected["ttl"]
            ),
        ),
        (
            expected["size"].as_u64().is_some_and(|n| n > 0)
                && fact("size") == format!("{} bytes", expected["size"]),
            format!(
                "the panel shows the stored size, {} bytes (it says {:?})",
                expected["size"],
                fact("size")
            ),
        ),
        (
            decoded.as_ref().is_some_and(|d| {
                d["session_id"] == CLICKED
                    && d["conversation_history"] == expected["conversation_history"]
            }),
            "the panel's decoded state (JSON) is the session's state".to_owned(),
        ),
    ]
}

/// The page on a demo on Redis: the store panel shows the server's facts and no address, and
/// a click on [`CLICKED`] (stored in Redis) opens its panel.
pub(super) fn drive_redis(
    browser: &mut Browser,
    port: u16,
    url: &str,
    redis_url: &str,
    screenshot: &Path,
) -> Result<Vec<(bool, String)>> {
    browser.open(url, WIDTH, HEIGHT)?;
    browser.wait_for(
        "the session's row",
        &format!("document.querySelector('#rows tr.session[data-id=\"{CLICKED}\"]')"),
        PAGE_TIMEOUT,
    )?;
    let store = browser.wait_for(
        "the store panel with the server's facts",
        "(() => { const s = document.getElementById('store'); \
         return s.dataset.loaded && s.querySelector('#store-memory') && \
         { backend: s.dataset.backend, fallback: s.dataset.fallback, text: s.innerText }; })()",
        PAGE_TIMEOUT,
    )?;
    let text = store["text"].as_str().unwrap_or_default();
    let info = get_json(port, "/store/info")?;
    let server = &info["redis"]["server"];
    let name = if server["server"] == "valkey" {
        "Valkey"
    } else {
        "Redis"
    };
    let version = format!("{name} {}", server["version"].as_str().unwrap_or("?"));
    let policy = format!(
        "policy {}",
        server["maxmemory_policy"].as_str().unwrap_or("?")
    );
    // host:port of the URL, without scheme or credentials.
    let address = redis_url
        .split_once("://")
        .map_or(redis_url, |(_, rest)| rest)
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let mut checks = vec![
        (
            store["backend"] == "redis"
                && store["fallback"] == "none"
                && text.contains(&version)
                && text.contains(&policy)
                && text.contains("MEMORY")
                && text.contains("AOF "),
            format!(
                "the store panel shows {version}, its memory, {policy} and persistence: {text:?}"
            ),
        ),
        (
            !address.is_empty() && !text.contains(address) && !text.contains("redis://"),
            "the store panel names no address".to_owned(),
        ),
    ];
    let clicks = open_by_click(browser, CLICKED)?;
    let expected = get_json(port, &format!("/sessions/{CLICKED}"))?;
    checks.extend(detail_checks(&panel(browser)?, &expected, clicks));
    fs::write(screenshot, browser.screenshot()?)
        .map_err(|e| format!("cannot write {}: {e}", screenshot.display()))?;
    Ok(checks)
}
