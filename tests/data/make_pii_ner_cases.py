"""Regenerate the labelled NER set: .venv/bin/python tests/data/make_pii_ner_cases.py

Writes tests/data/pii_ner_cases.jsonl: hand-written sentences (support chats,
FAQ answers, document lines) in Chinese and English with their person, org and
address spans, and hard negatives with none. Each case is written here as text
plus the labelled substrings; offsets are computed, so a typo cannot misplace one.

What is labelled (the contract `shoptalk.data.pii_ner` is scored against):
- person: a person's full name (surname and given name). A surname with a title
  alone (王先生, 张女士, Mr. Smith, Ms. Patel) is not: it names no one by itself.
- org: a named organization (company, bank, hospital, school), in public context
  or not; products and brands of products (iPhone, 微信, 小米手环) are not orgs.
- address: a street address down to the house number, with the divisions written
  right before it (上海市浦东新区...) and the building/unit/room after it; a
  residential compound with building and room (阳光花园小区5栋2单元301室) too.
  A city, district, road without a number, or landmark alone is not an address.
- Values the regex detectors find (e-mail here) are labelled with their type.

`split`: "heldout" cases were written before any detector rule was tuned and
are only scored, never tuned on; "dev" cases were written at the same time and
the rules were tuned on them, so their numbers are optimistic.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("pii_ner_cases.jsonl")

Case = tuple[str, list[tuple[str, str]]]

DEV: list[Case] = [
    ("您好，我是张伟，订单号SO20240518001还没有发货。", [("张伟", "person")]),
    (
        "请把发票寄到上海市浦东新区张江路88号3号楼502室，收件人李娜。",
        [("上海市浦东新区张江路88号3号楼502室", "address"), ("李娜", "person")],
    ),
    ("我们在北京、上海和深圳都有门店，营业时间9:00-21:00。", []),
    ("客户王建国反映，手机屏幕有划痕，要求换货。", [("王建国", "person")]),
    ("我在招商银行工作，工资卡也是这家的。", [("招商银行", "org")]),
    ("请联系我们的客户经理刘洋，他负责华东区的业务。", [("刘洋", "person")]),
    (
        "收货地址：广州市天河区体育西路191号中石化大厦B座2008室",
        [("广州市天河区体育西路191号中石化大厦B座2008室", "address")],
    ),
    ("杭州是一座美丽的城市，西湖很有名。", []),
    ("陈静女士在深圳市南山区科技园上班。", [("陈静", "person")]),
    ("我的孩子在北京大学附属中学读书。", [("北京大学附属中学", "org")]),
    ("本产品支持微信支付和支付宝付款。", []),
    ("王先生，您的快递已放在门口。", []),
    ("住址：成都市武侯区人民南路四段12号", [("成都市武侯区人民南路四段12号", "address")]),
    (
        "患者赵丽华于2024年3月在协和医院就诊。",
        [("赵丽华", "person"), ("协和医院", "org")],
    ),
    ("我们与中国平安保险公司签订了合作协议。", [("中国平安保险公司", "org")]),
    ("欢迎来到长城！门票价格为40元。", []),
    (
        "孙小明的邮箱是sunxm@example.com，请抄送给他。",
        [("孙小明", "person"), ("sunxm@example.com", "email")],
    ),
    ("我家在阳光花园小区5栋2单元301室。", [("阳光花园小区5栋2单元301室", "address")]),
    ("联系人：周杰，资料见附件。", [("周杰", "person")]),
    ("苹果公司发布了新款手机。", [("苹果公司", "org")]),
    ("这款洗衣机的型号是XQB80，保修三年。", []),
    ("Hi, this is Sarah Johnson, I ordered a blender last week.", [("Sarah Johnson", "person")]),
    (
        "Please ship it to 742 Evergreen Terrace, Springfield.",
        [("742 Evergreen Terrace", "address")],
    ),
    ("Our offices are in London, Paris and Singapore.", []),
    ("I work for Northwind Traders and need an invoice.", [("Northwind Traders", "org")]),
    ("Mr. Smith asked about the refund yesterday.", []),
    ("The iPhone 15 and the Galaxy S24 are both supported.", []),
    (
        "Send the documents to David Lee at 55 Water Street, Suite 300.",
        [("David Lee", "person"), ("55 Water Street, Suite 300", "address")],
    ),
    (
        "Dr. Maria Garcia from Mercy General Hospital signed the form.",
        [("Maria Garcia", "person"), ("Mercy General Hospital", "org")],
    ),
    ("We moved from Baker Street to Oxford Road last year.", []),
    (
        "Contact Emily Chen or Robert Brown for access to the portal.",
        [("Emily Chen", "person"), ("Robert Brown", "person")],
    ),
    (
        "The package was delivered to 1600 Pennsylvania Avenue yesterday.",
        [("1600 Pennsylvania Avenue", "address")],
    ),
    (
        "Acme Insurance denied the claim filed by James Wilson.",
        [("Acme Insurance", "org"), ("James Wilson", "person")],
    ),
    ("Route 66 runs through Arizona and New Mexico.", []),
    ("Open Windows Update and restart the laptop.", []),
    ("华夏银行北京分行的营业时间是几点？", [("华夏银行北京分行", "org")]),
    ("我住在北京市海淀区中关村大街27号。", [("北京市海淀区中关村大街27号", "address")]),
]

HELDOUT: list[Case] = [
    (
        "我叫林志强，住在厦门市思明区湖滨南路256号。",
        [("林志强", "person"), ("厦门市思明区湖滨南路256号", "address")],
    ),
    ("请转告黄晓燕，她的报销单已经批准了。", [("黄晓燕", "person")]),
    ("中国工商银行的客服电话是多少？", [("中国工商银行", "org")]),
    ("我们计划在成都和重庆开设新仓库。", []),
    (
        "快递请寄到武汉市洪山区珞喻路1037号华中科技大学。",
        [("武汉市洪山区珞喻路1037号", "address"), ("华中科技大学", "org")],
    ),
    ("郭靖先生的会员积分已过期。", [("郭靖", "person")]),
    ("新款小米手环支持心率监测。", []),
    ("张女士说她在腾讯公司上班。", [("腾讯公司", "org")]),
    ("吴昊天和马丽丽将参加下周的培训。", [("吴昊天", "person"), ("马丽丽", "person")]),
    ("旧店位于南京路，现已搬迁。", []),
    (
        "办公地点：深圳市福田区深南大道6008号特区报业大厦12楼",
        [("深圳市福田区深南大道6008号特区报业大厦12楼", "address")],
    ),
    ("这款茶叶产自云南普洱。", []),
    ("请在复旦大学附属华山医院挂号。", [("复旦大学附属华山医院", "org")]),
    (
        "业主何丽的房子在翠湖小区8栋1单元602室。",
        [("何丽", "person"), ("翠湖小区8栋1单元602室", "address")],
    ),
    ("春节期间长江沿线有大雾。", []),
    ("经理胡志明已经批准了退款申请。", [("胡志明", "person")]),
    ("退货请寄回杭州市西湖区文三路90号。", [("杭州市西湖区文三路90号", "address")]),
    ("我们的售后由京东物流负责配送。", [("京东物流", "org")]),
    ("Thanks, Michael Thompson, we received your return.", [("Michael Thompson", "person")]),
    ("Mail the cheque to 10 Downing Street, London.", [("10 Downing Street", "address")]),
    ("She is a nurse at St. Mary's Hospital.", [("St. Mary's Hospital", "org")]),
    ("We sell the Model Y charger and the PowerBank 20K.", []),
    (
        "Jennifer Lopez and Kevin O'Brien approved the budget.",
        [("Jennifer Lopez", "person"), ("Kevin O'Brien", "person")],
    ),
    ("Deliveries go to 221B Baker Street, Flat 2.", [("221B Baker Street, Flat 2", "address")]),
    ("Our partner Globex Corporation handles shipping.", [("Globex Corporation", "org")]),
    ("Texas and California have different tax rules.", []),
    ("Ms. Patel will call you back tomorrow.", []),
    (
        "The account belongs to Ahmed Hassan of Blue Ridge Capital.",
        [("Ahmed Hassan", "person"), ("Blue Ridge Capital", "org")],
    ),
    (
        "Our warehouse at 4500 Industrial Parkway, Unit 12 is closed on Sundays.",
        [("4500 Industrial Parkway, Unit 12", "address")],
    ),
    ("Windows 11 and Office 365 are installed on every laptop.", []),
    ("Laura Schmidt asked whether the Berlin office is open.", [("Laura Schmidt", "person")]),
    ("请把合同交给法务部的钱伟民审核。", [("钱伟民", "person")]),
    (
        "收件人：谢婷婷，地址：西安市雁塔区科技路48号创业广场C座1506室",
        [("谢婷婷", "person"), ("西安市雁塔区科技路48号创业广场C座1506室", "address")],
    ),
    ("Please forward this to Olivia Martinez in accounting.", [("Olivia Martinez", "person")]),
    (
        "Ship to 88 Queen Street West, Apt 5B, Toronto.",
        [("88 Queen Street West, Apt 5B", "address")],
    ),
]


def label(text: str, spans: list[tuple[str, str]], split: str) -> dict:
    out, cursor = [], 0
    for value, kind in spans:
        start = text.index(value, cursor)
        cursor = start + len(value)
        out.append({"start": start, "end": cursor, "type": kind})
    return {"text": text, "spans": out, "split": split}


def main() -> None:
    cases = [label(t, s, "dev") for t, s in DEV] + [label(t, s, "heldout") for t, s in HELDOUT]
    with OUT.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)
    n_spans = sum(len(c["spans"]) for c in cases)
    n_negative = sum(not c["spans"] for c in cases)
    print(f"{OUT}: {len(cases)} texts, {n_spans} spans, {n_negative} texts without spans")


if __name__ == "__main__":
    main()
