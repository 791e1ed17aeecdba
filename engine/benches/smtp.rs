//! SMTP delivery throughput into Postfix's smtp-sink at 1 to 16 connections, beside smtp-source.

use std::time::Instant;

#[path = "common/cpu.rs"]
#[allow(dead_code)] // each bench target compiles this file; not all use all of it
mod cpu;
#[path = "common/postfix.rs"]
#[allow(dead_code)] // this bench uses the rate only
mod postfix;

use herald::config::SmtpConfig;
use herald::deliver::{Class, Job, SmtpTransport};
use lettre::Message;
use postfix::{Sink, tools_dir};

/// Messages per measurement.
const COUNT: usize = 2000;

fn main() {
    let tools = tools_dir();
    let sink = Sink::start(&tools);
    println!("SMTP delivery into smtp-sink on 127.0.0.1, {COUNT} messages per run");
    println!(
        "{:>11}  {:>14}  {:>17}  {:>6}",
        "connections", "herald msg/s", "smtp-source msg/s", "ratio"
    );
    for connections in [1, 2, 4, 8, 16] {
        let ours = herald_rate(sink.port, connections);
        let theirs = postfix::source_rate(&tools, sink.port, connections as usize, COUNT);
        println!(
            "{connections:>11}  {ours:>14.0}  {theirs:>17.0}  {:>5.0}%",
            100.0 * ours / theirs
        );
    }
}

/// Messages per second through the SMTP transport, rendering included.
fn herald_rate(port: u16, connections: u32) -> f64 {
    let config = SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port,
        max_connections: connections,
        ..SmtpConfig::default()
    };
    let transport = SmtpTransport::new(&config).expect("SMTP transport");
    let start = Instant::now();
    let jobs = (0..COUNT).map(job).collect();
    let reports = transport.send_all(jobs);
    let took = start.elapsed();
    let sent = reports.iter().filter(|r| r.class == Class::Sent).count();
    assert_eq!(sent, COUNT, "not all sent: {:?}", reports.first());
    COUNT as f64 / took.as_secs_f64()
}

fn job(n: usize) -> Job {
    let message = Message::builder()
        .from("omero@localhost".parse().unwrap())
        .to(format!("user{n}@example.org").parse().unwrap())
        .subject("[OMERO] INSERT Experimenter notification")
        .message_id(Some(format!("<bench-{n}@localhost>")))
        .body(format!(
            "Modified objects:\nclass ome.model.meta.Experimenter:{n} - INSERT\n"
        ))
        .unwrap();
    Job {
        from: "omero@localhost".parse().unwrap(),
        to: format!("user{n}@example.org").parse().unwrap(),
        bytes: message.formatted(),
    }
}
