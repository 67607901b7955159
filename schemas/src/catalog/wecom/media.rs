//! 素材管理 temporary media params (docs/providers/wecom.md#temporary-media).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kinds of temporary media WeCom stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaType {
    /// JPG or PNG, at most 10 MB.
    Image,
    /// AMR, at most 2 MB and 60 s.
    Voice,
    /// MP4, at most 10 MB.
    Video,
    /// Any file, at most 20 MB.
    File,
}

/// `upload_media`: a temporary media file (valid three days), answered with its `media_id`,
/// which message actions (`image.media_id`, `file.media_id`...) and `avatar_mediaid` take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadMedia {
    /// What the file is; WeCom checks format and size by it.
    #[serde(rename = "type")]
    pub media_type: MediaType,
    /// The file name sent with the upload (WeCom keeps it for files).
    #[schemars(length(min = 1, max = 256))]
    pub filename: String,
    /// The file's bytes, base64.
    #[schemars(length(min = 1))]
    pub content_base64: String,
}

/// `upload_image`: an image (JPG or PNG, at most 2 MB) stored for good, answered with its `url`
/// (for news articles and the like).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadImage {
    /// The image's file name (`.jpg` or `.png`).
    #[schemars(length(min = 1, max = 256))]
    pub filename: String,
    /// The image's bytes, base64.
    #[schemars(length(min = 1))]
    pub content_base64: String,
}
