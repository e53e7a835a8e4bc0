//! Live reload through the proxy binary, under load: backends added, drained and removed, keys
//! rotated, a broken file refused, with no failed request and no pinned client moved off an
//! unchanged backend.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, admin, admin_backends, backend, header, http, spawn_proxy};

const OLD_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111\
                       1111111111111111111111111111111111111111111111111111111111111111";
const NEW_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222\
                       2222222222222222222222222222222222222222222222222222222222222222";

/// Writes the proxy's file: `backends` as (name, address, state), then `keys`.
fn write_config(path: &Path, backends: &[(&str, SocketAddr, Option<&str>)], keys: &[&str]) {
    let keys: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    let mut text = format!("keys = [{}]\n", keys.join(", "));
    for (name, addr, state) in backends {
        text.push_str(&format!(
            "[[backends]]\nname = {name:?}\nurl = \"http://{addr}\"\n"
        ));
        if let Some(state) = state {
            text.push_str(&format!("state = {state:?}\n"));
        }
    }
    std::fs::write(path, text).unwrap();
}

/// `GET /` through the proxy: the backend that answered and the new pin, if one was set.
fn get(proxy: SocketAddr, pin: Option<&str>) -> Result<(String, Option<String>), String> {
    let (status, headers, body) = http(proxy, "GET", "/", pin).ok_or("no answer")?;
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    let backend = body.split('|').next().unwrap_or_default().to_owned();
    let pin = header(&headers, "set-cookie").map(|c| c.split(';').next().unwrap().to_owned());
    Ok((backend, pin))
}

/// Pins of new clients, by the backend they were pinned to.
fn pins_on(proxy: SocketAddr, backend: &str) -> Vec<String> {
    (0..40)
        .filter_map(|_| match get(proxy, None).unwrap() {
            (on, Some(pin)) if on == backend => Some(pin),
            _ => None,
        })
        .collect()
}

/// `POST /reload` with the admin token.
fn reload(admin_addr: SocketAddr) -> common::Exchange {
    admin(
        admin_addr,
        "POST",
        "/reload",
        "127.0.0.1",
        Some(ADMIN_TOKEN),
    )
}

fn hang_up(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (at most 10 s) until `GET /backends` lists exactly `names`.
fn wait_for_backends(admin_addr: SocketAddr, names: &[&str]) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let listed = admin_backends(admin_addr);
        let mut seen: Vec<&str> = listed["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        seen.sort_unstable();
        if seen == names {
            return listed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "backends never became {names:?}: {listed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_request_and_move_no_pinned_client() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    write_config(&file, &[("a", a, None), ("b", b, None)], &[OLD_KEY]);
    let (proxy, listen, admin_addr) =
        spawn_proxy(&["--config".to_owned(), file.display().to_string()]);
    let pid = proxy.0.id();

    tokio::task::spawn_blocking(move || {
        let a_pins = pins_on(listen, "a");
        let b_pins = pins_on(listen, "b");
        assert!(!a_pins.is_empty() && !b_pins.is_empty());

        // Load: clients pinned to a (which never changes) and new clients, until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let moved = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let load: Vec<_> = (0..2)
            .map(|worker| {
                let (stop, failures, moved, served) = (
                    Arc::clone(&stop),
                    Arc::clone(&failures),
                    Arc::clone(&moved),
                    Arc::clone(&served),
                );
                let a_pins = a_pins.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed)
                        && n < 20_000
                        && started.elapsed() < Duration::from_secs(30)
                    {
                        let pinned = (n + worker).is_multiple_of(2);
                        let pin = pinned.then(|| a_pins[n % a_pins.len()].as_str());
                        match get(listen, pin) {
                            Ok((on, _)) if pinned && on != "a" => {
                                moved.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                    }
                })
            })
            .collect();

        // Reload 1 (SIGHUP): c joins, b drains, the key rotates with the old one retired.
        std::thread::sleep(Duration::from_millis(300));
        write_config(
            &file,
            &[("a", a, None), ("b", b, Some("drain")), ("c", c, None)],
            &[NEW_KEY, OLD_KEY],
        );
        hang_up(pid);
        wait_for_backends(admin_addr, &["a", "b", "c"]);
        // States are set once the new backends are in: c may be listed a moment before b
        // drains.
        let started = Instant::now();
        loop {
            let listed = admin_backends(admin_addr);
            if common::backend_named(&listed, "b")["state"] == "drain" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "b never drained: {listed}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drained: b keeps its pinned clients and takes no new one.
        for pin in &b_pins {
            assert_eq!(get(listen, Some(pin)).unwrap().0, "b");
        }
        let new_clients: Vec<String> = (0..30).map(|_| get(listen, None).unwrap().0).collect();
        assert!(!new_clients.iter().any(|on| on == "b"), "{new_clients:?}");
        assert!(new_clients.iter().any(|on| on == "c"), "{new_clients:?}");
        let new_key_pins = pins_on(listen, "c");
        assert!(!new_key_pins.is_empty());

        // Reload 2 (admin call): b is removed; its clients fail over and are pinned anew.
        write_config(
            &file,
            &[("a", a, None), ("c", c, None)],
            &[NEW_KEY, OLD_KEY],
        );
        let (status, _, body) = reload(admin_addr);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("removed backend b"), "{body}");
        wait_for_backends(admin_addr, &["a", "c"]);
        for pin in &b_pins {
            let (on, repinned) = get(listen, Some(pin)).unwrap();
            assert_ne!(on, "b");
            assert!(
                repinned.is_some(),
                "a client of a removed backend is pinned anew"
            );
        }

        // A broken file: refused, nothing changes, the proxy goes on.
        std::fs::write(&file, "backends = [ broken").unwrap();
        let (status, _, body) = reload(admin_addr);
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("not reloaded") && body.contains("proxy.toml"),
            "{body}"
        );
        hang_up(pid);
        std::thread::sleep(Duration::from_millis(200));
        let (status, _, _) = admin(admin_addr, "POST", "/reload", "127.0.0.1", None);
        assert_eq!(status, 401, "reload is a state change: the token is needed");

        stop.store(true, Ordering::Relaxed);
        for worker in load {
            worker.join().unwrap();
        }
        let served = served.load(Ordering::Relaxed);
        assert!(served > 100, "only {served} requests under load");
        assert_eq!(failures.load(Ordering::Relaxed), 0, "of {served}");
        assert_eq!(moved.load(Ordering::Relaxed), 0, "pinned to a, of {served}");
        eprintln!("{served} requests through two reloads, a broken file and a refusal: 0 failed");

        // Reload 3: the old key is dropped. Pins sealed with the new key still hold; those
        // sealed with the old one no longer open, and their clients are pinned anew.
        write_config(&file, &[("a", a, None), ("c", c, None)], &[NEW_KEY]);
        hang_up(pid);
        std::thread::sleep(Duration::from_millis(300));
        for pin in &new_key_pins {
            assert_eq!(get(listen, Some(pin)).unwrap(), ("c".to_owned(), None));
        }
        let (_, repinned) = get(listen, Some(&a_pins[0])).unwrap();
        assert!(repinned.is_some(), "an old-key pin is a new client now");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_come_from_the_file_the_admin_listener_and_reloads() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    let config = file.clone();
    let write = move |a_weight: u16| {
        let text = format!(
            "keys = [{OLD_KEY:?}]\n[[backends]]\nname = \"a\"\nurl = \"http://{a}\"\n\
             weight = {a_weight}\n[[backends]]\nname = \"b\"\nurl = \"http://{b}\"\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write(0);
    let (_proxy, listen, admin_addr) =
        spawn_proxy(&["--config".to_owned(), file.display().to_string()]);

    tokio::task::spawn_blocking(move || {
        let weight_of = |name: &str| {
            let listed = admin_backends(admin_addr);
            listed["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["name"] == name)
                .map(|b| b["weight"].clone())
                .unwrap()
        };
        assert_eq!(weight_of("a"), 0);
        assert_eq!(weight_of("b"), 1);
        for _ in 0..40 {
            let (on, _) = get(listen, None).unwrap();
            assert_eq!(on, "b", "weight 0 takes no new client");
        }

        let set = |path: &str, token| admin(admin_addr, "POST", path, "127.0.0.1", token);
        assert_eq!(set("/backends/a/weight/3", None).0, 401);
        assert_eq!(set("/backends/a/weight/257", Some(ADMIN_TOKEN)).0, 400);
        assert_eq!(set("/backends/nope/weight/3", Some(ADMIN_TOKEN)).0, 404);
        let answer = set("/backends/a/weight/3", Some(ADMIN_TOKEN));
        assert_eq!(answer.0, 200, "{answer:?}");
        assert_eq!(weight_of("a"), 3);
        let on_a = (0..200)
            .filter(|_| get(listen, None).unwrap().0 == "a")
            .count();
        assert!(
            on_a > 100,
            "a takes about 3 in 4 new clients: {on_a} of 200"
        );

        write(2);
        assert_eq!(reload(admin_addr).0, 200);
        assert_eq!(weight_of("a"), 2, "the file's weight, at reload");
    })
    .await
    .unwrap();
}
