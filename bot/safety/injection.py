"""Prompt-injection and jailbreak detection: instruction overrides, system-prompt extraction,
role-play as an unfiltered model, and fake role tokens, in English, German, Spanish, French, Russian
and Chinese. Patterns run on the folded skeleton (see `bot.safety.text`), so spacing, case, leetspeak,
full-width letters and zero-width characters do not hide them. Everyday phrases such as "ignore my
previous order" or "forget my old address" do not match: an override must target instructions.
"""

from __future__ import annotations

import base64
import binascii
import re

from bot.safety.text import skeletons

__all__ = ["InjectionDetector"]

_RULES = (
    r"(?:instructions?|instrucciones|instruktionen|anweisungen|vorgaben|richtlinien|consignes|directives?|directrices|"
    r"políticas|politiques|prompts?|rules|regeln|reglas|règles|guidelines|programming|programmierung|system ?prompt|"
    r"setup|configuration|policies)"
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")

_PATTERNS: dict[str, list[str]] = {
    "override": [
        # en
        r"\b(?:ignore|disregard|forget|override|bypass|drop|skip|abandon)\b(?:\s+\w+){0,4}?\s+(?:previous|prior|above|earlier|preceding|initial|original|old|existing|system|all|your|any|the)\s+(?:\w+\s+)?"
        + _RULES,
        r"\b(?:put|set|push) aside (?:whatever|everything|all|your|the)\b[^.?!\n]{0,40}\b(?:told you|instructions|rules|given)",
        r"\b(?:follow|obey|listen to) only (?:me|my)\b|\bonly (?:follow|obey|listen to) (?:me|my)\b|\b(?:no longer|stop) (?:follow|obey)\w*\b",
        _RULES
        + r"\b[^.!?\n]{0,50}\b(?:no longer apply|don't apply any ?more|do not apply any ?more|gelten (?:\w+ )*nicht mehr|ne s'appliquent plus|ya no (?:aplican|se aplican|valen)|больше не действуют)",
        r"\bnur noch auf mich\b|\bn'obéis plus\b|\bseulement aux miennes\b|\bya no obedeces\b|\bsolo (?:me )?obedeces a mí\b|слушай только меня|больше не подчиняешься",
        r"(?:不用再|不再|不必再|无需再?)遵守|只听我的",
        r"\b(?:ignore|disregard|forget)\s+(?:all|everything)\s+(?:you were told|above|before|previously)",
        r"\b(?:ignore|disregard)\s+(?:the|all|everything)\s+(?:above|previous|prior)\b(?!\s+(?:order|email|e-mail|message|address|request|booking|payment))",
        r"\bfrom now on,?\s+(?:begin|start|always|never|only)\b",
        r"\bdecode (?:it|this|that)\b[^.?!\n]{0,40}\b(?:obey|follow|execute|do (?:it|what it says|exactly|as it says))",
        r"\bstop being (?:a|the|an) (?:\w+ )?(?:bot|assistant|ai)\b",
        r"\bnew\s+(?:instructions|rules|system prompt)\s*:",
        r"\bfrom now on,?\s+(?:you (?:are|will|must)|ignore|respond|answer)\b",
        # de
        r"\b(?:ignorier\w*|vergiss|vergessen sie|missacht\w*|übergeh\w*)\b(?:\s+\w+){0,4}?\s+" + _RULES,
        r"\bab (?:jetzt|sofort) (?:bist du|ignorierst du|antwortest du)",
        # es
        r"\b(?:ignora\w*|olvida\w*|omite|descarta)\b(?:\s+\w+){0,4}?\s+" + _RULES,
        r"\ba partir de ahora,? (?:eres|ignora|responde)",
        # fr
        r"\b(?:ignore[rsz]?|oublie[rsz]?|néglige[rsz]?)\b(?:\s+\S+){0,4}?\s+" + _RULES,
        r"\bà partir de maintenant,? (?:tu es|ignore|réponds)",
        # ru
        r"(?:игнорируй\w*|игнорировать|забудь\w*|отбрось|не обращай внимания на)(?:\s+\S+){0,4}?\s+(?:инструкци\w*|указани\w*|правил\w*|промпт\w*|установк\w*)",
        r"с этого момента,? ты",
        # zh
        r"(?:忽略|无视|忘记|忘掉|不要理会|跳过)[^。！？\n]{0,12}(?:指令|指示|说明|规则|提示|设定|要求)",
    ],
    "extraction": [
        r"\b(?:print|show|reveal|repeat|output|display|dump|leak|give me|tell me|share|write out|spell out|list)\b[^.?!\n]{0,40}\b(?:system ?prompt|(?:initial|original|hidden|secret|internal|full) (?:prompt|instructions)|(?:text|words|messages?|everything) (?:above|before this)|what you were told|your (?:prompt|instructions|rules|guidelines)(?!\s+(?:for|on|about|regarding|to)\s))",
        r"\bwhat (?:is|are|were) your (?:system prompt|initial instructions|original instructions|hidden instructions|instructions)\s*\??\s*$",
        r"\bwhat were you told (?:before|at the start)",
        r"\bsystem[\s_-]?prompt\b|\bprint_config\b|\bsudo\b",
        r"\b(?:system message|mensaje de sistema|mensaje del sistema|message (?:du )?système|systemnachricht|системное сообщение)\b",
        r"\b(?:con (?:el|la) que|with which|that) (?:te|you were|you've been) (?:configur\w+|set up|programm?ed|instruct\w+)",
        r"\b(?:admin(?:istrat(?:or|eur))?|administrador|админ\w*) (?:mode|modus|modo|commands?|befehle|comandos|commandes)\b|\bmode administrateur\b|\bmodo administrador\b|\badmin-?modus\b",
        r"\b(?:phone numbers?|home address|addresses|e-?mails?|contact details|personal data|téléphone|adresse|dirección|teléfono|телефон|адрес)\b[^.!?\n]{0,40}\b(?:of|on|for|from|du|de|del|des)\s+(?:another|other|the other|the passenger|that passenger|this passenger|the customer|that customer|this customer|the client|client qui|booking [a-z0-9]{5,}|otro cliente|otros clientes|другого клиента)",
        r"(?:其他用户|别的用户|其他客户)的?(?:手机号|电话|地址|信息|订单|数据)|隐藏的?(?:指令|提示|规则|配置)",
        r"\b(?:your|the|its) (?:initial|original|hidden|secret|internal|system|developer'?s?|first|pre-?set|confidential)\s+(?:instructions|prompt|rules|guidelines|message|configuration|directives)",
        r"\byour (?:full |whole |complete |entire )?prompt\b(?!\s+(?:reply|response|answer|delivery|service|payment|attention))",
        r"\b(?:rules|instructions|guidelines) (?:the developers|your developers|they|you were) (?:gave|given|told|set)",
        r"\b(?:secret|hidden) (?:ones|rules|instructions)\b",
        r"\b(?:before|prior to) (?:this|our|the) (?:conversation|chat)\b[^.?!\n]{0,40}\b(?:told|given|instructions|say)|\b(?:told|given|instructions)\b[^.?!\n]{0,40}\bbefore (?:this|our|the) (?:conversation|chat)",
        r"\b(?:verbatim|word for word|mot pour mot|wort für wort|palabra por palabra|literalmente)\b[^.?!\n]{0,60}\b(?:repeat|text|above|instructions|prompt|texte|dessus|texto|antes|text|oben)|\b(?:repeat|répète|repite|wiederhole|translate)\b[^.?!\n]{0,60}\b(?:verbatim|word for word|mot pour mot|wort für wort|palabra por palabra|literalmente)\b",
        r"\b(?:(?:admin|administrator|internal|root) (?:credentials|passwords?|codes?|discount codes?)|other (?:customers?|users?)'?s? (?:data|details|orders?|information|addresses|emails?))",
        r"\bvor diesem gespräch\b|\b(?:internen?|geheimen?) (?:rabattcodes?|anweisungen|regeln)",
        r"\b(?:instrucciones que te dieron|te dieron antes|antes de hablar conmigo|datos de otros? clientes?)",
        r"(?:t'a-t-on|on t'a) (?:données?|dit)|\bavant cette conversation\b|au-dessus de ce message",
        r"(?:до начала (?:этого )?разговора|что тебе сказали|выше этого сообщения|дословно)",
        r"(?:对话开始之前|收到了什么指示|逐字|重复上面|上面的文字|系统消息|其他用户的(?:订单|信息|数据))",
        r"\brepeat (?:the|everything|all)\b[^.?!\n]{0,20}\b(?:above|verbatim|word for word)",
        r"\b(?:zeig|gib|nenn|wiederhol|verrat)\w*\b[^.?!\n]{0,30}\b(?:system ?prompt|systemanweisung\w*|anweisungen|instruktionen|vorgaben)",
        r"\b(?:muestra\w*|dime|revela\w*|repite|imprime|dame)\b[^.?!\n]{0,30}\b(?:prompt|instrucciones|mensaje del sistema)",
        r"\b(?:montre|affiche|révèle|répète|donne|dis)\w*(?:-moi)?\b[^.?!\n]{0,30}\b(?:prompt|instructions|message système|consignes)",
        r"(?:покажи|выведи|раскрой|повтори|напиши|скажи|дай)\w*[^.?!\n]{0,30}(?:промпт|prompt|системн\w+ (?:сообщени\w+|инструкци\w+|подсказк\w+)|инструкци\w+|указани\w+)",
        r"(?:显示|输出|告诉我|泄露|打印|重复|给我看|说出)[^。！？\n]{0,12}(?:系统提示|提示词|初始指令|系统指令|你的指令|你的规则|上面的内容)",
        r"(?:系统提示|提示词|初始指令|系统指令|你的指令|你的规则)[^。！？\n]{0,12}(?:告诉我|发给我|给我看|显示出来|输出|说出来|打印出来)",
    ],
    "roleplay": [
        r"\bdan\b.{0,40}\b(?:mode|anything|jailbreak|peut tout|puede todo|kann alles)|\bdo anything now\b",
        r"(?:\byou are|\byou're|\btu es|\beres|\bdu bist|ты теперь|теперь ты|你现在是|你是)\s*(?:now |maintenant |ahora |jetzt )?dan\b",
        r"\b(?:enable|activate|enter|switch to|you are (?:now )?in)\s+(?:the\s+)?(?:developer|dev|god|jailbreak|unrestricted|debug) mode\b(?!\s+(?:on|in|for|of)\s+(?:the|my|our|his|her|a|this)\s)(?![^.?!\n]*\b(?:tv|router|phone|iphone|android|device|laptop|console|app|settings|tablet|galaxy|pc|computer|mac|car)\b)",
        r"\b(?:act|pretend|roleplay|play) as (?:my )?(?:late |dead |deceased |dear )?(?:grandma|grandmother|granny)",
        r"(?:grandma|grandmother|granny|abuela|grand-mère|grand-mere|oma|großmutter|бабушк\w*|奶奶|外婆)[^\n]{0,160}(?:internal|secret|confidential|password|admin|rules|codes|internos|interne|geheim|внутренн\w*|секрет\w*|内部|密码)|(?:internal|secret|confidential|internos|interne)[^\n]{0,160}(?:grandma|grandmother|abuela|grand-mère|oma|бабушк\w*|奶奶)",
        r"\b(?:ai|assistant|model|bot|chatbot)\s+(?:with|that has|having) no (?:limits|restrictions|rules|filters|guidelines|censorship)",
        r"\bno (?:content )?(?:policy|policies|restrictions|filters|rules|limits) any ?more\b|\bno content policy\b",
        r"\b(?:released|freed|liberated) from (?:its|your|all) (?:guidelines|rules|restrictions)|\byour new (?:persona|role|identity|personality)\b",
        r"\b(?:no longer|not anymore) (?:bound|obliged|required|restricted)\b",
        r"\b(?:you are|you're|act as|pretend to be|behave like|roleplay as|become)\b[^.?!\n]{0,30}\b(?:unfiltered|uncensored|unrestricted|jailbroken|evil|without (?:any )?(?:rules|restrictions|filters|limits))",
        r"\b(?:no longer|not) (?:bound|restricted|limited|constrained) by\b",
        r"\bwithout (?:any )?(?:restrictions|filters|censorship|limitations|guidelines|moral)\b",
        r"\bjailbreak(?:ed)? (?:mode|prompt|yourself)|\bjailbreak (?:the|this) (?:ai|bot|model|assistant)",
        r"\b(?:ohne (?:einschränkungen|beschränkungen|filter|regeln|zensur)|keine (?:regeln|einschränkungen) mehr|tu so,? als wärst du)",
        r"\b(?:sin (?:ningún |ninguna |ningun )?(?:restricci\w+|filtros?|censura|reglas|límites)|ya no estás (?:obligado|sujeto|limitado))",
        r"\b(?:sans (?:aucune? )?(?:restrictions?|filtres?|censure|règles?|limites?)|plus soumis à|n'(?:es|étais) plus (?:soumis|limité|obligé))",
        r"(?:\bactiva\w*|\baktivier\w*|\bpasse en|\bactive[rz]?|\bschalte|активируй|включи|开启|启用|进入|打开)\s+(?:el |den |le |la |in den )?(?:modo (?:desarrollador|dios)|entwicklermodus|mode (?:développeur|dieu)|режим разработчика|开发者模式)(?![^.?!\n]*\b(?:tv|router|handy|móvil|movil|téléphone|telefon|телефон|手机|电视)\b)",
        r"(?:без (?:ограничений|фильтров|цензуры|правил)|больше не связан|не связан никакими)",
        r"(?:没有(?:任何)?(?:限制|规则|过滤|审查)|不(?:再)?受[^。！？\n]{0,10}(?:限制|约束)|无限制模式|越狱|假装你是)",
    ],
    "role_token": [
        r"<\|(?:im_start|im_end|system|assistant|user|endoftext|begin_of_text|start_header_id)\|>",
        r"\[/?inst\]|<<\s*/?sys\s*>>|</s>|<s>",
        r"^\s*(?:#{1,3}\s*)?(?:system|assistant|developer|sistema|système|systeme|система|系统|asistente|usuario)\s*(?:message|prompt)?\s*[:：]",
        r"\b(?:system|admin|developer) (?:override|message|instruction|command)\s*:",
    ],
}


class InjectionDetector:
    def __init__(self) -> None:
        self._compiled = [
            (kind, re.compile(p, re.MULTILINE)) for kind, patterns in _PATTERNS.items() for p in patterns
        ]

    def detect(self, text: str) -> list[str]:
        """The kinds of injection found ("override", "extraction", "roleplay", "role_token"), if any.

        Base64 blobs are decoded and checked too ("decode this and do what it says").
        """
        views = (*skeletons(text), *(skeletons(d)[0] for d in _decoded(text)))
        kinds: list[str] = []
        for kind, pattern in self._compiled:
            if kind not in kinds and any(pattern.search(view) for view in views):
                kinds.append(kind)
        return kinds


def _decoded(text: str) -> list[str]:
    """Readable text hidden in base64 blobs (at most three)."""
    found = []
    for blob in _BASE64.findall(text)[:3]:
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            found.append(decoded)
    return found
