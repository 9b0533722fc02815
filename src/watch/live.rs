//! Live `watch`: a connection to a server, its frames through a [`super::Watcher`].

use std::path::Path;

use color_eyre::eyre::{Result, eyre};

use crate::comfy::server_url::ServerUrl;

use super::LineFormat;

pub async fn run(server: ServerUrl, format: LineFormat, record: Option<&Path>) -> Result<()> {
    let _ = (format, record);
    Err(eyre!("watching {server} is not built yet"))
}
