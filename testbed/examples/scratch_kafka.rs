//! Temporary experiment (deleted before the report).
use std::time::Duration;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::consumer::{BaseConsumer, Consumer};

#[tokio::main]
async fn main() {
    let tansu = testbed::kafka::Tansu::start().await.unwrap();
    tansu.create_topic("t", 1).await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap()).set("linger.ms", "50")
        .create().unwrap();
    let futs: Vec<_> = (0..5).map(|i| producer.send_result(FutureRecord::to("t").key("k").payload(&format!("{i}"))).unwrap()).collect();
    for f in futs { println!("{:?}", f.await.unwrap().map(|d| (d.partition, d.offset)).map_err(|e| e.0)); }
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", tansu.bootstrap()).create().unwrap();
    println!("wm: {:?}", c.fetch_watermarks("t", 0, Duration::from_secs(5)));
    let got = testbed::kafka::consume(&tansu.bootstrap(), "t", 10, Duration::from_secs(3)).await.unwrap();
    println!("consumed {:?}", got.iter().map(|m| m.offset).collect::<Vec<_>>());
    producer.send(FutureRecord::to("t").key("k").payload("single"), Duration::from_secs(5)).await.unwrap();
    println!("wm: {:?}", c.fetch_watermarks("t", 0, Duration::from_secs(5)));
}
