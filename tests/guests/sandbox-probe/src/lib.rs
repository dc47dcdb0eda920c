//! A guest that tries to reach outside its sandbox, for the sandbox tests.
//!
//! Each reconcile tries to read and write files, list the root directory,
//! read environment variables and arguments, open a TCP connection to the
//! port in the object's `data.port`, and resolve a host name; it answers
//! with one `create` of a ConfigMap whose `data` records what each attempt
//! got. The tests assert that every attempt got nothing.

use std::io::Write;

use paddock_guest::{Action, Controller, Error, Info, Outcome, Request, Watch, json};

/// The controller.
#[derive(Debug)]
pub struct SandboxProbe;

fn outcome<T, E: std::fmt::Display>(result: Result<T, E>, show: impl Fn(T) -> String) -> String {
    match result {
        Ok(value) => format!("allowed: {}", show(value)),
        Err(error) => format!("denied: {error}"),
    }
}

impl Controller for SandboxProbe {
    fn describe() -> Info {
        Info::new("sandbox-probe").watch(Watch::primary("v1", "ConfigMap"))
    }

    fn reconcile(request: Request) -> Result<Outcome, Error> {
        let port = request
            .object
            .str_at("/data/port")
            .unwrap_or("1")
            .to_owned();
        let read_file = outcome(std::fs::read_to_string("/etc/hostname"), |text| text);
        let read_dir = outcome(std::fs::read_dir("/"), |entries| {
            format!("{} entries", entries.count())
        });
        let cwd_dir = outcome(std::fs::read_dir("."), |entries| {
            format!("{} entries", entries.count())
        });
        let write_file = outcome(
            std::fs::File::create("/tmp/paddock-sandbox-probe")
                .and_then(|mut file| file.write_all(b"escaped")),
            |()| "written".to_owned(),
        );
        let env_home = outcome(std::env::var("HOME"), |home| home);
        let env_count = std::env::vars().count().to_string();
        let args_count = std::env::args().count().to_string();
        let tcp = outcome(
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")),
            |_| "connected".to_owned(),
        );
        let dns = outcome(
            std::net::ToSocketAddrs::to_socket_addrs("localhost:80"),
            |addrs| format!("{} addresses", addrs.count()),
        );
        Ok(Outcome::done().with(Action::create(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "probe-results", "namespace": "default"},
            "data": {
                "readFile": read_file,
                "readDir": read_dir,
                "readCwd": cwd_dir,
                "writeFile": write_file,
                "envHome": env_home,
                "envCount": env_count,
                "argsCount": args_count,
                "tcp": tcp,
                "dns": dns,
            },
        }))))
    }
}

paddock_guest::export_controller!(SandboxProbe);
