"""Regenerate the labelled PII set: .venv/bin/python tests/data/make_pii_cases.py

Writes tests/data/pii_cases.jsonl, one text per line with its labelled spans
({"start", "end", "type"}, Python str offsets). Values are synthetic but valid
where the real thing is checked (Luhn, MOD 11-2, mod 97), so the detector is
scored on what it will meet. Hard negatives (order, invoice and tracking
numbers, dates, prices, versions, wrong checksums) are labelled with no spans.
Seeded: the same file comes out every time.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import string
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).with_name("pii_cases.jsonl")
ALNUM = string.ascii_letters + string.digits
NAMES = "john mary wei li zhang anna peter olga ahmed yuki chen maria lars ingrid sofia raj".split()
DOMAINS = "example.com example.org mail.example.net qq.com 163.com company.cn corp.example.co.uk outlook.com 126.com".split()
PROVINCES = "11 12 31 32 33 37 42 44 51 61 65".split()
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
IBAN_BBAN = {  # country: (letters in bank code, digits after)
    "DE": (0, 18), "GB": (4, 14), "FR": (0, 23), "NL": (4, 10), "ES": (0, 20), "CH": (0, 17), "BE": (0, 12),
}  # fmt: skip


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def email(rng: random.Random) -> str:
    a, b, d = rng.choice(NAMES), rng.choice(NAMES), rng.choice(DOMAINS)
    forms = [f"{a}.{b}@{d}", f"{a}{b}{rng.randint(1, 99)}@{d}", f"{a}_{b}@{d}", f"{a}+support@{d}"]
    forms += [f"{a.title()}.{b.title()}@{d.upper()}", f"{rng.randint(10**7, 10**10)}@qq.com"]
    return rng.choice(forms)


def phone(rng: random.Random) -> str:
    area = f"{rng.randint(2, 9)}{digits(rng, 2)}"
    mobile = f"1{rng.choice('3456789')}{digits(rng, 9)}"
    m1, m2, m3 = mobile[:3], mobile[3:7], mobile[7:]
    forms = [
        f"+44 20 {digits(rng, 4)} {digits(rng, 4)}",
        f"+49 30 {digits(rng, 8)}",
        f"+33 1 {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
        f"+81 3-{digits(rng, 4)}-{digits(rng, 4)}",
        f"+65 {digits(rng, 4)} {digits(rng, 4)}",
        f"({area}) {digits(rng, 3)}-{digits(rng, 4)}",
        f"{area}-{digits(rng, 3)}-{digits(rng, 4)}",
        f"{area}.{digits(rng, 3)}.{digits(rng, 4)}",
        f"+1 {area}-{digits(rng, 3)}-{digits(rng, 4)}",
        mobile,
        f"{m1} {m2} {m3}",
        f"{m1}-{m2}-{m3}",
        f"+86 {mobile}",
        f"+86 {m1} {m2} {m3}",
        f"0{rng.choice(['10', '21', '755', '571', '20'])}-{rng.randint(2, 8)}{digits(rng, 7)}",
        f"(0{rng.choice(['10', '21', '28'])}) {rng.randint(2, 8)}{digits(rng, 7)}",
        f"+86-{m1}-{m2}-{m3}",
        f"0086 {m1} {m2} {m3}",
        f"+44 (0)20 {digits(rng, 4)} {digits(rng, 4)}",
        f"1-800-{digits(rng, 3)}-{digits(rng, 4)}",
    ]
    return rng.choice(forms)


def cn_id(rng: random.Random, valid: bool = True) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randint(0, 20000))
    body = f"{rng.choice(PROVINCES)}{digits(rng, 4)}{born:%Y%m%d}{digits(rng, 3)}"
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


def card_number(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice(
        [
            ("4", 16),
            ("51", 16),
            ("55", 16),
            ("2223", 16),
            ("37", 15),
            ("62", 16),
            ("62", 19),
            ("6011", 16),
        ]
    )
    body = prefix + digits(rng, length - len(prefix) - 1)
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check


def card_format(rng: random.Random, number: str) -> str:
    sep = rng.choice(["", " ", "-"])
    if not sep:
        return number
    if len(number) == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def bank_card(rng: random.Random) -> str:
    return card_format(rng, card_number(rng))


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_BBAN))
    letters, n = IBAN_BBAN[country]
    bban = chars(rng, string.ascii_uppercase, letters) + digits(rng, n)
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    compact = f"{country}{98 - numeric % 97:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def ip(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.6:
        first = rng.choice([10, 172, 192, rng.randint(1, 223)])
        return ".".join(str(x) for x in [first, *(rng.randint(0, 255) for _ in range(3))])
    if kind < 0.8:
        return ipaddress.IPv6Address(rng.getrandbits(128)).exploded
    groups = [f"{rng.randint(1, 0xFFFF):x}" for _ in range(rng.randint(1, 3))]
    return "2001:db8::" + ":".join(groups)


def passport(rng: random.Random) -> str:
    return rng.choice(
        [
            "E" + digits(rng, 8),
            "G" + digits(rng, 8),
            "EA" + digits(rng, 7),
            str(rng.randint(1, 9)) + digits(rng, 8),
        ]
    )


def url_credentials(rng: random.Random) -> str:
    scheme = rng.choice(["postgres", "mysql", "https", "ftp", "redis", "mongodb"])
    user = rng.choice(["admin", "root", "deploy", "svc_backup", rng.choice(NAMES)])
    password = chars(rng, ALNUM + "!$%*", rng.randint(8, 16))
    host = rng.choice(["db.internal.example.com", "10.0.3.7", "files.example.org", "cache.local"])
    port = rng.choice(["", ":5432", ":3306", ":6379"])
    return f"{scheme}://{user}:{password}@{host}{port}"


def jwt(rng: random.Random) -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    payload = {
        "sub": digits(rng, 6),
        "name": rng.choice(NAMES),
        "iat": rng.randint(10**9, 2 * 10**9),
    }
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.{chars(rng, ALNUM + '-_', 43)}"


def private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
    body = "\n".join(chars(rng, ALNUM + "+/", 64) for _ in range(rng.randint(2, 4)))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"


def secret(rng: random.Random) -> str:
    forms = [
        lambda: "sk-proj-" + chars(rng, ALNUM + "_-", 48),
        lambda: "sk-" + chars(rng, ALNUM, 48),
        lambda: "ghp_" + chars(rng, ALNUM, 36),
        lambda: "github_pat_" + chars(rng, ALNUM, 22) + "_" + chars(rng, ALNUM, 59),
        lambda: f"xoxb-{digits(rng, 12)}-{digits(rng, 12)}-{chars(rng, ALNUM, 24)}",
        lambda: "AKIA" + chars(rng, string.ascii_uppercase + string.digits, 16),
        lambda: "AIza" + chars(rng, ALNUM + "_-", 35),
        lambda: jwt(rng),
        lambda: private_key(rng),
    ]
    return rng.choice(forms)()


def token(rng: random.Random) -> str:
    return chars(rng, ALNUM, rng.randint(32, 48))


def password(rng: random.Random) -> str:
    word = rng.choice(["Summer", "Tiger", "blue", "Dragon", "abc", "Welcome", "qwerty"])
    return word + digits(rng, rng.randint(2, 5)) + rng.choice(["", "!", "#", "@"])


def order(rng: random.Random) -> str:
    year = rng.randint(2019, 2025)
    stamp = f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{digits(rng, 6)}"
    return rng.choice([f"ORD-{year}-{digits(rng, 6)}", stamp, f"SO{digits(rng, 10)}"])


def date_text(rng: random.Random) -> str:
    d = date(2018, 1, 1) + timedelta(days=rng.randint(0, 2800))
    return rng.choice(
        [
            f"{d:%Y-%m-%d}",
            f"{d:%d/%m/%Y}",
            f"{d.year}年{d.month}月{d.day}日",
            f"{d:%B} {d.day}, {d.year}",
        ]
    )


def time_text(rng: random.Random) -> str:
    h, m = rng.randint(0, 23), rng.choice([0, 15, 30, 45])
    return rng.choice(
        [f"{h:02d}:{m:02d}", f"{h:02d}:{m:02d}:{rng.randint(0, 59):02d}", f"09:00-{h:02d}:30"]
    )


def product(rng: random.Random) -> str:
    return rng.choice(
        [
            f"KX-{rng.randint(100, 999)}",
            f"SKU-{digits(rng, 5)}",
            f"AB-{digits(rng, 4)}-X",
            f"型号 ZQ{digits(rng, 3)}",
        ]
    )


def invoice(rng: random.Random) -> str:
    return rng.choice([f"INV-{rng.randint(2019, 2025)}-{digits(rng, 4)}", f"No. {digits(rng, 8)}"])


def price(rng: random.Random) -> str:
    n = rng.randint(5, 9999)
    return rng.choice([f"${n:,}.{rng.randint(0, 99):02d}", f"¥{n:,}", f"€ {n}.90", f"{n}元"])


def version(rng: random.Random) -> str:
    a, b, c = rng.randint(0, 12), rng.randint(0, 30), rng.randint(0, 20)
    return rng.choice(
        [f"v{a}.{b}.{c}", f"version {a}.{b}.{c}.{rng.randint(1, 99)}", f"版本 {a}.{b}.{c}"]
    )


def isbn(rng: random.Random) -> str:
    return rng.choice(["978-3-16-148410-0", "978-7-111-21382-6", "ISBN 9780306406157"])


def tracking(rng: random.Random) -> str:
    return rng.choice(
        ["1Z" + chars(rng, string.ascii_uppercase + string.digits, 16), "SF" + digits(rng, 13)]
    )


def bad_card(rng: random.Random) -> str:
    return card_format(rng, card_number(rng, valid=False))


def bad_id(rng: random.Random) -> str:
    return cn_id(rng, valid=False)


def long_number(rng: random.Random) -> str:
    return rng.choice([f"42000{digits(rng, 23)}", f"{order(rng)[:8]} {time_text(rng)}", "IP67"])


def barcode(rng: random.Random) -> str:
    return "690" + digits(rng, 10)


def short_phone(rng: random.Random) -> str:
    return rng.choice(
        [f"{digits(rng, 3)}-{digits(rng, 4)}", f"ext. {digits(rng, 4)}", digits(rng, 5)]
    )


# slot -> (value generator, labelled type or None for a distractor)
SLOTS = {
    "email": (email, "email"),
    "phone": (phone, "phone"),
    "cn_id": (cn_id, "cn_id"),
    "card": (bank_card, "bank_card"),
    "iban": (iban, "iban"),
    "ip": (ip, "ip"),
    "passport": (passport, "passport"),
    "url": (url_credentials, "url_credentials"),
    "secret": (secret, "secret"),
    "token": (token, "secret"),
    "password": (password, "secret"),
    "order": (order, None),
    "date": (date_text, None),
    "time": (time_text, None),
    "product": (product, None),
    "invoice": (invoice, None),
    "price": (price, None),
    "version": (version, None),
    "isbn": (isbn, None),
    "tracking": (tracking, None),
    "bad_card": (bad_card, None),
    "bad_id": (bad_id, None),
    "barcode": (barcode, None),
    "long_number": (long_number, None),
    "short_phone": (short_phone, None),
}

POSITIVE = [
    "Please write to {email} and we will reply within 2 business days.",
    "Hi, my e-mail is {email}, order {order} has not arrived yet.",
    "您好，我的邮箱是{email}，请把发票{invoice}发给我。",
    "联系人：王先生，邮箱{email}，电话{phone}。",
    "You can reach me on {phone} after {time}.",
    "Call our customer ({phone}) about order {order} placed on {date}.",
    "我的手机号是{phone}，订单号{order}，麻烦尽快发货。",
    "请拨打{phone}联系客服，工作时间{time}。",
    "The caller left {phone} and {email} for the refund of {price}.",
    "身份证号码：{cn_id}，姓名：李明。",
    "Customer ID card number {cn_id} was used for the {product} warranty.",
    "实名认证失败，身份证{cn_id}与手机{phone}不匹配。",
    "Card number {card}, expiry 08/27, charged {price}.",
    "请退款到我的银行卡{card}，金额{price}。",
    "I paid with {card} on {date} for {product}.",
    "Please transfer {price} to IBAN {iban} before {date}.",
    "Bank details: {iban} (invoice {invoice}).",
    "收款账户 IBAN：{iban}，备注订单号{order}。",
    "The request came from {ip} at {time}.",
    "Login from IP {ip} failed three times; firmware {version}.",
    "服务器地址是{ip}，请在{date}前完成迁移。",
    "Our VPN gateway {ip} and the backup {ip} are both down.",
    "Passport number: {passport}, nationality: Norway.",
    "My passport no. is {passport} and my flight leaves {date}.",
    "护照号码：{passport}，有效期至{date}。",
    "请提供护照号{passport}以便办理报关。",
    "Pass No. {passport} was scanned at the gate at {time}.",
    "The connection string is {url}/app?sslmode=require",
    "数据库连接：{url}/orders，请勿外传。",
    "Backups go to {url}/backups every night at {time}.",
    "Our OpenAI key leaked: {secret} — please rotate it.",
    "config: {secret}",
    "部署脚本里写死了密钥 {secret}，需要删除。",
    "Here is the deploy credential:\n{secret}\nDo not share it.",
    "API key: {token}",
    "Use the secret {token} to sign the webhook (build {version}).",
    "访问令牌：{token}，有效期24小时。",
    "Authorization token={token} for account {email}",
    "my password is {password}, please reset it",
    "系统密码：{password}，请勿告诉别人。",
    "New hire: {email}, phone {phone}, ID {cn_id}, card {card}.",
    "Ticket {invoice}: user {email} from {ip} reported that {product} costs {price}.",
]
NEGATIVE = [
    "Your order {order} ships on {date}.",
    "订单号 {order} 已于{date}发货。",
    "Invoice {invoice} totals {price}, due {date}.",
    "发票号 {invoice}，金额{price}。",
    "{product} is back in stock at {price}.",
    "产品 {product} 现价{price}，{date}起发售。",
    "Please update the app to {version} before {date}.",
    "请将客户端升级到{version}。",
    "Opening hours: {time} on weekdays, closed on {date}.",
    "营业时间 {time}，{date}休息。",
    "The book (ISBN {isbn}) costs {price}.",
    "Tracking number {tracking} was scanned on {date}.",
    "快递单号{tracking}，预计{date}送达。",
    "The reference {bad_card} is not a valid card number.",
    "编号 {bad_card} 校验失败。",
    "证件号 {bad_id} 校验位错误，请重新输入。",
    "The document number {bad_id} could not be verified.",
    "商品条形码 {barcode}，单价{price}。",
    "Call extension {short_phone} at the front desk.",
    "Room {short_phone}, floor 3, building {product}.",
    "Forgot your password? The reset link expires after 24 hours.",
    "Commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 fixed the {product} bug in {version}.",
    "Request id 550e8400-e29b-41d4-a716-446655440000 finished at {time}.",
    "Bring your passport to the counter. Orders are collected at {time}.",
    "Version 10.0.19041.1 of the driver and {version} of the tool.",
    "Temperature 36.6, weight 72.5 kg, height 180 cm, measured {date}.",
    "我们的退货期限是30天，订单{order}可以退货。",
    "Score 4.8/5 from 12,345 reviews; price {price}.",
    "微信支付交易单号 {long_number}，请保留凭证。",
    "Log entry {long_number}: payment captured for {product}.",
]


def fill(template: str, rng: random.Random) -> dict:
    text, spans = "", []
    for literal, slot in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
        text += literal
        if slot:
            make, kind = SLOTS[slot]
            value = make(rng)
            if kind:
                spans.append({"start": len(text), "end": len(text) + len(value), "type": kind})
            text += value
    return {"text": text, "spans": spans}


def main() -> None:
    rng = random.Random(20250518)
    cases = [fill(t, rng) for _ in range(8) for t in POSITIVE]
    cases += [fill(t, rng) for _ in range(4) for t in NEGATIVE]
    with OUT.open("w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps(case, ensure_ascii=False) + "\n")
    n_spans = sum(len(c["spans"]) for c in cases)
    n_negative = sum(not c["spans"] for c in cases)
    print(f"{OUT}: {len(cases)} texts, {n_spans} spans, {n_negative} texts without spans")


if __name__ == "__main__":
    main()
