"""The vendor's own sample answer of the list endpoint, byte for byte as its doc page shows it."""

from __future__ import annotations

import json
from typing import Any

SAMPLE_BODY = rb"""{
"code": 0,
"message": "success",
"data": {
"totalCount": 3,
"totalPage": 2,
"pageNo": 0,
"pageSize": 2,
"result": [
{
"id": 462821966907328,
"corpid": "ww396db747d40d16f2",
"salesId": 446755638177856,
"customerId": 460155938357312,
"createTime": "2022-02-28 14:14:48",
"fileContent": "{\"name\":\"0.0.2-SNAPSHOT\",\"url\":\"https://dev.tanmarket.cn/fdfsServer/group1/M00/42/CD/rBHTdWIOJcqAOtPnAAB3mQDufYE665.rar\",\"size\":\"29.9KB\",\"type\":\"rar\",\"fileId\":\"group1/M00/42/CD/rBHTdWIOJcqAOtPnAAB3mQDufYE665.rar\"}",
"fileName": "0.0.2-SNAPSHOT",
"operatorId": 410992262547520,
"authorName": "admin",
"followContent": null
},
{
"id": 460911105235008,
"corpid": "ww396db747d40d16f2",
"salesId": 446755638177856,
"customerId": 460155938357312,
"createTime": "2022-02-17 19:04:10",
"fileContent": "{\"name\":\"0.0.2-SNAPSHOT\",\"url\":\"https://dev.tanmarket.cn/fdfsServer/group1/M00/42/CD/rBHTdWIOJcqAOtPnAAB3mQDufYE665.rar\",\"size\":\"29.9KB\",\"type\":\"rar\",\"fileId\":\"group1/M00/42/CD/rBHTdWIOJcqAOtPnAAB3mQDufYE665.rar\"}",
"fileName": "0.0.2-SNAPSHOT",
"operatorId": 410992262547520,
"authorName": "admin",
"followContent": null
}
]
}
}"""


def sample_record() -> dict[str, Any]:
    """The first record of the sample answer, freshly decoded."""
    return json.loads(SAMPLE_BODY)["data"]["result"][0]
