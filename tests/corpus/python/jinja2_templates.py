import jinja2
from jinja2.sandbox import SandboxedEnvironment

def main(items):
    env = SandboxedEnvironment()
    text = env.from_string("{% for i in items %}{{ i.name|upper }}={{ '%.1f'|format(i.price) }};{% endfor %}").render(items=items)
    plain = jinja2.Template("Hello {{ who }}!").render(who="world")
    try:
        env.from_string("{{ ''.__class__.__mro__ }}").render()
        blocked = False
    except jinja2.exceptions.SecurityError:
        blocked = True
    return {"text": text, "plain": plain, "unsafe_blocked": blocked}
