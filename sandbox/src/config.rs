//! Who the sandbox knows: Tencent Cloud accounts, approved SMS signatures and templates, robot keys,
//! and the provider-side throttles.

use std::fmt;
use std::time::Duration;

/// Secret id of the default Tencent Cloud account.
pub const DEFAULT_SECRET_ID: &str = "AKIDsandbox0000000000000000000000000";
/// Secret key of the default Tencent Cloud account (a public test value, not a secret).
pub const DEFAULT_SECRET_KEY: &str = "sandbox-secret-key";
/// SMS application of the default account.
pub const DEFAULT_SDK_APP_ID: &str = "1400000000";
/// Approved signature of the default configuration.
pub const DEFAULT_SIGN_NAME: &str = "Yizhan";
/// Keys of the default WeCom robots.
pub const DEFAULT_ROBOT_KEYS: [&str; 2] = ["sandbox-robot-key", "sandbox-robot-key-2"];

/// DingTalk robots: `(access_token, secret)`; the first signs (加签), the second does not.
pub const DEFAULT_DINGTALK_ROBOTS: [(&str, Option<&str>); 2] =
    [("sandbox-dingtalk-token", Some("SECsandbox")), ("sandbox-dingtalk-token-2", None)];
/// Feishu bots: `(hook_id, secret)`; the first checks signatures, the second does not.
pub const DEFAULT_FEISHU_HOOKS: [(&str, Option<&str>); 2] =
    [("sandbox-feishu-hook", Some("sandbox-feishu-secret")), ("sandbox-feishu-hook-2", None)];
/// The default Feishu self-built app: `(app_id, app_secret)`.
pub const DEFAULT_FEISHU_APP: (&str, &str) = ("cli_sandbox", "sandbox-app-secret");
/// The verified SES sending domain of the default configuration.
pub const DEFAULT_SES_DOMAIN: &str = "mail.yizhan.test";
/// The default Tencent Meeting app: `(app_id, sdk_id, secret_id, secret_key)`.
pub const DEFAULT_MEETING_APP: (&str, Option<&str>, &str, &str) =
    ("200000001", Some("19000001"), "sandbox-meeting-secret-id", "sandbox-meeting-secret-key");
/// The default WeCom corp: `(corp_id, app_secret, contacts_secret)`.
pub const DEFAULT_WECOM_CORP: (&str, &str, &str) = ("wwsandbox", "sandbox-app-secret", "sandbox-contacts-secret");
/// The default Juzibot token.
pub const DEFAULT_JUZIBOT_TOKEN: &str = "sandbox-juzibot-token";

/// A webhook robot whose credential is in its URL and which may check signatures with `secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRobot {
    /// DingTalk `access_token` or Feishu hook id.
    pub credential: String,
    /// Signing secret (DingTalk `SEC...` or Feishu bot secret); `None`: requests are not signed.
    pub secret: Option<String>,
}

impl fmt::Debug for SignedRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRobot")
            .field("credential", &self.credential)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A WeCom corp and the secrets of its APIs.
#[derive(Clone, PartialEq, Eq)]
pub struct WecomCorp {
    /// `corpid` given to `gettoken`.
    pub corp_id: String,
    /// Self-built app's `corpsecret`: its token reaches the app APIs (messages, media...).
    pub app_secret: String,
    /// 通讯录同步 secret: its token alone reaches the contacts APIs; `None`: the corp has none.
    pub contacts_secret: Option<String>,
    /// 客户联系 secret for the external-contact APIs; `None` (the default of [`Self::new`]): none.
    pub external_contact_secret: Option<String>,
}

impl WecomCorp {
    /// A corp with these secrets and no external-contact secret.
    pub fn new(corp_id: &str, app_secret: &str, contacts_secret: Option<&str>) -> Self {
        WecomCorp {
            corp_id: corp_id.to_string(),
            app_secret: app_secret.to_string(),
            contacts_secret: contacts_secret.map(str::to_string),
            external_contact_secret: None,
        }
    }
}

impl fmt::Debug for WecomCorp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WecomCorp").field("corp_id", &self.corp_id).finish_non_exhaustive()
    }
}

/// A Feishu self-built app.
#[derive(Clone, PartialEq, Eq)]
pub struct FeishuApp {
    /// `app_id` (`cli_...`) given to `tenant_access_token/internal`.
    pub app_id: String,
    /// `app_secret` that must come with `app_id`, else code 10014.
    pub app_secret: String,
}

impl fmt::Debug for FeishuApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeishuApp").field("app_id", &self.app_id).field("app_secret", &"<redacted>").finish()
    }
}

/// A Tencent Meeting app (企业 AppId, optional SdkId, and its key pair).
#[derive(Clone, PartialEq, Eq)]
pub struct MeetingApp {
    /// Enterprise id, expected in the `AppId` header.
    pub app_id: String,
    /// Expected `SdkId` header; `None`: the request must carry no `SdkId`.
    pub sdk_id: Option<String>,
    /// Key id, expected in the `X-TC-Key` header.
    pub secret_id: String,
    /// Key that signs `X-TC-Signature` (HMAC-SHA256); never sent.
    pub secret_key: String,
}

impl fmt::Debug for MeetingApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeetingApp")
            .field("app_id", &self.app_id)
            .field("sdk_id", &self.sdk_id)
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// A Tencent Cloud API key pair and the SMS applications it owns.
#[derive(Clone, PartialEq, Eq)]
pub struct TencentAccount {
    /// `SecretId` named in the TC3 `Authorization` header's `Credential`.
    pub secret_id: String,
    /// `SecretKey` that derives the TC3-HMAC-SHA256 signing key; never sent.
    pub secret_key: String,
    /// `SmsSdkAppId`s of this account; another account's is `UnauthorizedOperation.SmsSdkAppIdVerifyFail`.
    pub sdk_app_ids: Vec<String>,
    /// Provider-side throttle: at most this many API calls per rolling second, else
    /// `RequestLimitExceeded`. `None`: unthrottled.
    pub requests_per_second: Option<u32>,
}

impl fmt::Debug for TencentAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TencentAccount")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .field("sdk_app_ids", &self.sdk_app_ids)
            .field("requests_per_second", &self.requests_per_second)
            .finish()
    }
}

/// An approved SMS template. `content` uses Tencent's `{1}`, `{2}`... placeholders; a request must
/// carry exactly one `TemplateParamSet` value per placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsTemplate {
    /// `TemplateId` a request must name, compared as a string.
    pub id: String,
    /// Approved text with `{1}`, `{2}`... placeholders.
    pub content: String,
}

impl SmsTemplate {
    /// How many `{n}` placeholders the content has (the highest n).
    pub fn param_count(&self) -> usize {
        let mut count = 0;
        let mut rest = self.content.as_str();
        while let Some(start) = rest.find('{') {
            rest = &rest[start + 1..];
            if let Some(end) = rest.find('}')
                && let Ok(n) = rest[..end].parse::<usize>()
            {
                count = count.max(n);
            }
        }
        count
    }

    /// The content with `{n}` replaced by `params[n-1]`.
    pub fn render(&self, params: &[String]) -> String {
        let mut text = self.content.clone();
        for (i, value) in params.iter().enumerate() {
            text = text.replace(&format!("{{{}}}", i + 1), value);
        }
        text
    }
}

/// Everything the sandbox accepts. Immutable once the sandbox runs; faults and delays are
/// programmed at run time through [`crate::SandboxState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Tencent Cloud key pairs that may sign API calls (SMS, SES); others get `AuthFailure.SecretIdNotFound`.
    pub tencent_accounts: Vec<TencentAccount>,
    /// Approved SMS signatures (`SignName`), valid for every account.
    pub sms_sign_names: Vec<String>,
    /// Approved SMS templates, valid for every account.
    pub sms_templates: Vec<SmsTemplate>,
    /// WeCom group robot webhook `key`s that exist.
    pub robot_keys: Vec<String>,
    /// WeCom's documented robot limit: messages per rolling minute per key (`None`: no limit).
    pub robot_messages_per_minute: Option<u32>,
    /// DingTalk custom robots (`access_token`, optional 加签 secret) that exist.
    pub dingtalk_robots: Vec<SignedRobot>,
    /// DingTalk's documented robot limit: messages per rolling minute per robot (`None`: no limit).
    pub dingtalk_messages_per_minute: Option<u32>,
    /// Feishu custom bots (hook id, optional signing secret) that exist.
    pub feishu_hooks: Vec<SignedRobot>,
    /// Feishu's documented bot limits, per rolling second and minute per bot (`None`: no limit).
    pub feishu_messages_per_second: Option<u32>,
    /// Feishu's per-bot limit per rolling minute (`None`: no limit).
    pub feishu_messages_per_minute: Option<u32>,
    /// Feishu self-built apps that may get a `tenant_access_token`.
    pub feishu_apps: Vec<FeishuApp>,
    /// Juzibot API tokens (the `token` query parameter) that are accepted.
    pub juzibot_tokens: Vec<String>,
    /// WeCom corps whose `corpid`/`corpsecret` pairs `gettoken` accepts.
    pub wecom_corps: Vec<WecomCorp>,
    /// SES sending domains that exist, verified, from the start.
    pub ses_domains: Vec<String>,
    /// Tencent Meeting apps whose signed requests are accepted.
    pub meeting_apps: Vec<MeetingApp>,
    /// Accepted distance between `X-TC-Timestamp` and the sandbox clock.
    pub timestamp_tolerance: Duration,
    /// How many recorded requests, SMS and robot messages are kept (the oldest go first);
    /// the counters in [`crate::Stats`] keep counting.
    pub record_limit: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self::empty()
    }
}

impl SandboxConfig {
    /// No account, no key, no signature, no template: every provider call is refused.
    /// The robot limit is on (20/min) and the timestamp tolerance 300 s, like the real services.
    pub fn empty() -> Self {
        Self {
            tencent_accounts: Vec::new(),
            sms_sign_names: Vec::new(),
            sms_templates: Vec::new(),
            robot_keys: Vec::new(),
            robot_messages_per_minute: Some(20),
            dingtalk_robots: Vec::new(),
            dingtalk_messages_per_minute: Some(20),
            feishu_hooks: Vec::new(),
            feishu_messages_per_second: Some(5),
            feishu_messages_per_minute: Some(100),
            feishu_apps: Vec::new(),
            juzibot_tokens: Vec::new(),
            wecom_corps: Vec::new(),
            ses_domains: Vec::new(),
            meeting_apps: Vec::new(),
            timestamp_tolerance: Duration::from_secs(300),
            record_limit: 100_000,
        }
    }

    /// The accounts of tests and the README demo:
    /// Tencent `AKIDsandbox0000000000000000000000000` / `sandbox-secret-key` owning SMS app
    /// `1400000000`; approved signature `Yizhan`; templates `1001` (one parameter) and `1002`
    /// (two parameters); robot keys `sandbox-robot-key` and `sandbox-robot-key-2`; the DingTalk
    /// robots, Feishu bots, Feishu app, Juzibot token, SES domain and Meeting app of the
    /// `DEFAULT_*` constants.
    pub fn default_accounts() -> Self {
        let mut config = Self::empty()
            .tencent_account(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, &[DEFAULT_SDK_APP_ID])
            .sms_sign_name(DEFAULT_SIGN_NAME)
            .sms_template("1001", "Your verification code is {1}. It expires in 5 minutes.")
            .sms_template("1002", "Hello {1}, your order {2} has shipped.");
        for key in DEFAULT_ROBOT_KEYS {
            config = config.wecom_robot_key(key);
        }
        for (token, secret) in DEFAULT_DINGTALK_ROBOTS {
            config = config.dingtalk_robot(token, secret);
        }
        for (hook_id, secret) in DEFAULT_FEISHU_HOOKS {
            config = config.feishu_hook(hook_id, secret);
        }
        let (app_id, sdk_id, secret_id, secret_key) = DEFAULT_MEETING_APP;
        config
            .feishu_app(DEFAULT_FEISHU_APP.0, DEFAULT_FEISHU_APP.1)
            .juzibot_token(DEFAULT_JUZIBOT_TOKEN)
            .wecom_corp(WecomCorp::new(DEFAULT_WECOM_CORP.0, DEFAULT_WECOM_CORP.1, Some(DEFAULT_WECOM_CORP.2)))
            .ses_domain(DEFAULT_SES_DOMAIN)
            .meeting_app(app_id, sdk_id, secret_id, secret_key)
    }

    /// Adds a DingTalk robot; with `secret`, its requests must be signed (加签).
    pub fn dingtalk_robot(mut self, access_token: &str, secret: Option<&str>) -> Self {
        self.dingtalk_robots
            .push(SignedRobot { credential: access_token.to_string(), secret: secret.map(str::to_string) });
        self
    }

    /// Messages per rolling minute per DingTalk robot; `None` switches the limit off.
    pub fn dingtalk_rate_limit(mut self, per_minute: Option<u32>) -> Self {
        self.dingtalk_messages_per_minute = per_minute;
        self
    }

    /// Adds a Feishu bot; with `secret`, its requests must carry a valid `sign`.
    pub fn feishu_hook(mut self, hook_id: &str, secret: Option<&str>) -> Self {
        self.feishu_hooks.push(SignedRobot { credential: hook_id.to_string(), secret: secret.map(str::to_string) });
        self
    }

    /// Messages per rolling second and minute per Feishu bot; `None` switches a limit off.
    pub fn feishu_rate_limit(mut self, per_second: Option<u32>, per_minute: Option<u32>) -> Self {
        self.feishu_messages_per_second = per_second;
        self.feishu_messages_per_minute = per_minute;
        self
    }

    /// Adds a Feishu self-built app.
    pub fn feishu_app(mut self, app_id: &str, app_secret: &str) -> Self {
        self.feishu_apps.push(FeishuApp { app_id: app_id.to_string(), app_secret: app_secret.to_string() });
        self
    }

    /// Adds an SES sending domain, verified.
    pub fn ses_domain(mut self, domain: &str) -> Self {
        self.ses_domains.push(domain.to_string());
        self
    }

    /// Adds a Tencent Meeting app; requests must carry `SdkId` exactly when `sdk_id` is set.
    pub fn meeting_app(mut self, app_id: &str, sdk_id: Option<&str>, secret_id: &str, secret_key: &str) -> Self {
        self.meeting_apps.push(MeetingApp {
            app_id: app_id.to_string(),
            sdk_id: sdk_id.map(str::to_string),
            secret_id: secret_id.to_string(),
            secret_key: secret_key.to_string(),
        });
        self
    }

    /// Adds a WeCom corp.
    pub fn wecom_corp(mut self, corp: WecomCorp) -> Self {
        self.wecom_corps.push(corp);
        self
    }

    /// Adds a Juzibot token.
    pub fn juzibot_token(mut self, token: &str) -> Self {
        self.juzibot_tokens.push(token.to_string());
        self
    }

    /// Adds a Tencent Cloud account (unthrottled).
    pub fn tencent_account(mut self, secret_id: &str, secret_key: &str, sdk_app_ids: &[&str]) -> Self {
        self.tencent_accounts.push(TencentAccount {
            secret_id: secret_id.to_string(),
            secret_key: secret_key.to_string(),
            sdk_app_ids: sdk_app_ids.iter().map(|s| s.to_string()).collect(),
            requests_per_second: None,
        });
        self
    }

    /// Throttles an account added before: more than `per_second` calls in a rolling second are
    /// answered `RequestLimitExceeded`. Unknown secret ids are ignored.
    pub fn tencent_rate_limit(mut self, secret_id: &str, per_second: u32) -> Self {
        if let Some(account) = self.tencent_accounts.iter_mut().find(|a| a.secret_id == secret_id) {
            account.requests_per_second = Some(per_second);
        }
        self
    }

    /// Approves an SMS signature.
    pub fn sms_sign_name(mut self, name: &str) -> Self {
        self.sms_sign_names.push(name.to_string());
        self
    }

    /// Approves an SMS template (`{1}`, `{2}`... are its parameters).
    pub fn sms_template(mut self, id: &str, content: &str) -> Self {
        self.sms_templates.push(SmsTemplate { id: id.to_string(), content: content.to_string() });
        self
    }

    /// Adds a WeCom group robot webhook key.
    pub fn wecom_robot_key(mut self, key: &str) -> Self {
        self.robot_keys.push(key.to_string());
        self
    }

    /// Messages per rolling minute per robot key; `None` switches the limit off.
    pub fn robot_rate_limit(mut self, per_minute: Option<u32>) -> Self {
        self.robot_messages_per_minute = per_minute;
        self
    }

    /// See [`SandboxConfig::record_limit`](struct.SandboxConfig.html#structfield.record_limit).
    pub fn record_limit(mut self, limit: usize) -> Self {
        self.record_limit = limit;
        self
    }

    pub(crate) fn account(&self, secret_id: &str) -> Option<&TencentAccount> {
        self.tencent_accounts.iter().find(|a| a.secret_id == secret_id)
    }

    pub(crate) fn template(&self, id: &str) -> Option<&SmsTemplate> {
        self.sms_templates.iter().find(|t| t.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_count_and_render_parameters() {
        let config = SandboxConfig::default_accounts();
        let t1 = config.template("1001").unwrap();
        let t2 = config.template("1002").unwrap();
        assert_eq!((t1.param_count(), t2.param_count()), (1, 2));
        assert_eq!(t2.render(&["Li".to_string(), "A-7".to_string()]), "Hello Li, your order A-7 has shipped.");
    }

    #[test]
    fn debug_output_hides_secret_keys() {
        let text = format!("{:?}", SandboxConfig::default_accounts());
        assert!(!text.contains(DEFAULT_SECRET_KEY));
        assert!(text.contains(DEFAULT_SECRET_ID));
    }
}
