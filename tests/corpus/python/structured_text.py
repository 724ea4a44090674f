import ipaddress
import json
import re
import xml.etree.ElementTree as ET

def main(xml, log):
    root = ET.fromstring(xml)
    prices = [float(item.get("price")) for item in root.iter("item")]
    pattern = re.compile(r"(?P<ip>\d+\.\d+\.\d+\.\d+) .*?\"(?P<method>[A-Z]+) (?P<path>\S+)")
    hits = [m.groupdict() for m in pattern.finditer(log)]
    network = ipaddress.ip_network("192.168.0.0/28")
    return {
        "total": sum(prices),
        "names": [item.text for item in root.iter("item")],
        "hits": hits,
        "private": [ipaddress.ip_address(h["ip"]).is_private for h in hits],
        "hosts": network.num_addresses - 2,
        "json": json.loads(json.dumps({"b": [1, 2], "a": None}, sort_keys=True)),
    }
