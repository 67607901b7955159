"""Calls the sandbox with Tencent Cloud's official Python SDK (tencentcloud-sdk-python).

Run by sandbox/tests/tencent_official_sdk.rs, which passes the sandbox and its accounts in the
environment. Prints one JSON line per call: {"call", "response"} on success, {"call", "error",
"message"} when the API (or the SDK) refused it. Exits 0 whatever the calls answered: the Rust
test decides what is right.
"""

import base64
import json
import os
import sys
import time

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.ses.v20201002 import models as ses_models
from tencentcloud.ses.v20201002 import ses_client
from tencentcloud.sms.v20210111 import models as sms_models
from tencentcloud.sms.v20210111 import sms_client

env = os.environ


def profile():
    # The SDK's own signer (TC3-HMAC-SHA256, SignedHeaders content-type;host), plain HTTP to the sandbox.
    http = HttpProfile(protocol="http", endpoint=env["TENCENT_ENDPOINT"], reqMethod="POST", reqTimeout=30)
    return ClientProfile(signMethod="TC3-HMAC-SHA256", httpProfile=http)


def b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# Every line printed, so that a later call can use an earlier answer (the MessageId).
SENT = []


def call(name, client_method, request_class, params):
    request = request_class()
    request.from_json_string(json.dumps(params))
    try:
        response = client_method(request)
        line = json.dumps({"call": name, "response": json.loads(response.to_json_string())})
        SENT.append(line)
        print(line, flush=True)
    except TencentCloudSDKException as error:
        print(json.dumps({"call": name, "error": error.get_code(), "message": error.get_message()}), flush=True)


def main():
    cred = credential.Credential(env["TENCENT_SECRET_ID"], env["TENCENT_SECRET_KEY"])
    sms = sms_client.SmsClient(cred, "ap-guangzhou", profile())
    ses = ses_client.SesClient(cred, "ap-hongkong", profile())
    phone = env["TENCENT_PHONE"]

    call("SendSms", sms.SendSms, sms_models.SendSmsRequest, {
        "PhoneNumberSet": [phone],
        "SmsSdkAppId": env["TENCENT_SDK_APP_ID"],
        "SignName": env["TENCENT_SIGN_NAME"],
        "TemplateId": env["TENCENT_TEMPLATE_ID"],
        "TemplateParamSet": ["123456"],
        "SessionContext": "official-sdk",
    })
    call("SendEmail", ses.SendEmail, ses_models.SendEmailRequest, {
        "FromEmailAddress": "Yizhan <noreply@%s>" % env["TENCENT_SES_DOMAIN"],
        "Destination": ["someone@example.com"],
        "Subject": "official SDK",
        "Simple": {"Html": b64("<p>你好, <b>SDK</b></p>"), "Text": b64("你好, SDK")},
        "TriggerType": 1,
    })
    now = int(time.time())
    call("PullSmsSendStatusByPhoneNumber", sms.PullSmsSendStatusByPhoneNumber,
         sms_models.PullSmsSendStatusByPhoneNumberRequest, {
             "BeginTime": now - 3600,
             "EndTime": now + 60,
             "Offset": 0,
             "Limit": 100,
             "PhoneNumber": phone,
             "SmsSdkAppId": env["TENCENT_SDK_APP_ID"],
         })
    # The status report of the SMS above, handed out once by the receipt queue.
    call("PullSmsSendStatus", sms.PullSmsSendStatus, sms_models.PullSmsSendStatusRequest, {
        "Limit": 100,
        "SmsSdkAppId": env["TENCENT_SDK_APP_ID"],
    })
    # The mail's status, asked for by MessageId on the China date it was sent.
    sent = [json.loads(line) for line in SENT]
    message_id = next((s["response"].get("MessageId") for s in sent if s["call"] == "SendEmail"), "")
    call("GetSendEmailStatus", ses.GetSendEmailStatus, ses_models.GetSendEmailStatusRequest, {
        "RequestDate": time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600)),
        "Offset": 0,
        "Limit": 100,
        "MessageId": message_id,
    })


if __name__ == "__main__":
    sys.exit(main())
