"""The common passwords the password policy refuses (ASVS 2.1.7: at least the top 3,000).

Two sources, merged into :data:`COMMON_PASSWORDS` once, at import:

* ``services/auth/data/xato-net-10-million-passwords-10000.txt``: the 10,000 most frequent
  passwords of Mark Burnett's ten-million-password corpus (xato.net, 2015), as published in
  SecLists (``Passwords/Common-Credentials/``, MIT licence), unchanged: one password per
  line, most frequent first (one line is empty in the original and is skipped). It is a
  constant shipped with the code, read like source, not I/O of the running service.
* The hand-written lists below, for what an English corpus misses: Russian words in Cyrillic
  and in transliteration, the keyboard-layout slip ("пароль" typed as "gfhjkm"), local words
  (school, canteen, the card itself) and digit patterns.

Entries are lower-cased (the check lower-cases too). At check time they are combined with
affix stripping and leet folding (see ``passwords.py``), so "word + digits/year/!" forms of
any entry are refused as well.
"""

from __future__ import annotations

from pathlib import Path

PUBLISHED_LIST = (Path(__file__).resolve().parents[1] / "data"
                  / "xato-net-10-million-passwords-10000.txt")

# Bases: words that, alone or with a short affix ("1", "123", "2015", "!"), are common passwords.
_BASES = """
password passwort pass passw0rd parol parol1 parolь parool pasword passwd secret secret1
qwerty qwert qwertyu qwertyui qwertyuiop asdf asdfg asdfgh asdfghj asdfghjk asdfghjkl
zxcv zxcvb zxcvbn zxcvbnm qazwsx qwaszx qweasd qweasdzxc zaq1 zaq12wsx 1qaz2wsx xsw2zaq1
1q2w3e 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y q1w2e3r4 q1w2e3r4t5 qwe123 qweqwe asdasd zxczxc
admin administrator root user guest test tester testing login welcome hello hellohello
letmein access master monkey dragon shadow sunshine princess football baseball basketball
soccer hockey superman batman spiderman starwars pokemon naruto minecraft fortnite roblox
iloveyou loveyou lovely love lover loveme ilovu trustno1 whatever freedom ninja mustang
michael jennifer jordan hunter ranger buster thomas robert daniel andrew joshua matthew
charlie charles george harley jessica ashley amanda michelle nicole samantha summer winter
autumn spring flower flowers cookie chocolate cheese pepper ginger banana orange apple
computer internet google yahoo facebook instagram twitter youtube microsoft windows linux
killer hacker matrix phoenix diamond silver golden gold money dollar bitcoin lucky
maggie ginger tigger bailey buddy daisy sophie chelsea arsenal liverpool manchester
barcelona realmadrid juventus chicago dallas yankees lakers london moscow paris berlin
america canada russia ukraine europe mother father family friends friend forever
beautiful sweet sweetie angel angels baby babygirl babyboy blessed jesus christ heaven
mylove myspace mypass mypassword nopassword changeme default temp temporary
qwerty123 abc abcd abcde abcdef abcdefg abcdefgh abc123 abcd1234 a1b2c3 a1b2c3d4
aaaa zzzz xxxx asdqwe azerty azertyuiop qwertz ytrewq trewq
superstar rockstar rockyou cowboy dakota jackson jasmine pussy sexy hottie
anthony william richard joseph taylor hannah madison austin justin martin patrick
nathan samuel alexander alexandr alexandra aleksandr aleksandra aleksey alexey
andrey andrei anton artem artyom denis dmitry dmitriy dima egor evgeniy evgeny
igor ivan kirill konstantin maksim maxim mikhail misha nikita nikolay oleg pavel
roman ruslan sergey sergei serega stanislav vadim valera vladimir vova vitaliy
yuriy anna anastasia nastya natasha natalia natalya olga irina ekaterina katya
elena lena tatiana tanya svetlana sveta marina maria masha mariya yulia julia
daria dasha polina sofia sofiya alina kristina karina viktoria vika oksana
lyubov lubov lyuba nadezhda vera galina lyudmila ludmila valentina
privet poka solnce solnyshko solnishko zvezda zvezdochka kotik kotenok koshka
sobaka zaika zayka rybka lapochka malysh lyublyu lublu ljubov schastie
mama papa mamapapa mamochka babushka dedushka semya sem'ya druzya
spartak zenit dinamo cska lokomotiv rubin krasnodar torpedo
samsung nokia iphone xiaomi huawei sony lenovo asus acer apple
matrix terminator gladiator avatar hobbit gandalf frodo sherlock
school shkola shkolnik student uchenik uchitel teacher klass
schoolcard shkolnayakarta karta kartochka izhcombank izhevsk udmurtia
stolovaya obed zavtrak avtobus tramvay bilet
football futbol hokkey voleybol basketbol tennis boxing
pervyy vtoroy tretiy sto tysyacha million
"""

# Bases typed in Cyrillic (also compared after the same folding).
_CYRILLIC = """
пароль парольчик йцукен йцукенг йцукенгш йцукенгшщз фывапро фывапролдж ячсмить
привет любовь люблю солнце солнышко зайка котик котёнок котенок рыбка малыш
наташа наталья марина мария маша анна настя анастасия екатерина катя елена лена
ольга ирина светлана света татьяна таня юлия дарья даша полина софия алина
кристина карина виктория вика оксана надежда галина людмила валентина
александр саша алексей андрей антон артём артем денис дмитрий дима егор евгений
игорь иван кирилл максим михаил миша никита николай олег павел роман руслан
сергей владимир вова виталий юрий мама папа бабушка дедушка семья друзья
спартак зенит динамо цска локомотив школа школьник ученик учитель карта
"""

# Complete passwords of 8+ characters that do not reduce to a base above.
_FULL = """
12345678 123456789 1234567890 0123456789 87654321 987654321 9876543210 09876543
11111111 111111111 1111111111 22222222 33333333 44444444 55555555 66666666
77777777 88888888 99999999 00000000 12121212 13131313 11223344 11112222
12341234 123123123 123321123 12344321 12345678910 1234554321 123456654321
147258369 147852369 159357456 159753159 741852963 789456123 963852741
321654987 456789123 112233445566 121314151617 1234qwer qwer1234 1qazxsw2
zaq1xsw2 1q2w3e4r5t6y7u 1qaz2wsx3edc qwertyuiop123 q1w2e3r4t5y6 qazwsxedc
qazwsxedcrfv 123qweasd 123qweasdzxc qweasdzxc123 zxcvbnm123 asdfghjkl123
123456qwerty qwerty123456 qwerty12345 qwerty1234 qwerty12 123qwe123
1234abcd abcd12345 abc12345 abc123456 aa123456 a12345678 q12345678 123456aa
123456789a 123456789q 12345678a 12345678q 1234567a 123456789z
iloveyou1 iloveyou2 ilovemymom ilovemyson ilovemydaughter ilovemykids
letmein1 letmein123 welcome1 welcome123 password1 password12 password123
password1234 passw0rd1 p@ssw0rd p@ssword pa$$word passwort1 changeme123
trustno1 whatever1 sunshine1 princess1 football1 baseball1 superman1
michael1 jennifer1 jordan23 charlie1 iloveu12 monkey123 dragon123
qwerty11 qwerty01 qwerty78 qwerty99 1q2w3e4r5 1q2w3e4r5t6 1qaz1qaz
aaaaaaaa zzzzzzzz qqqqqqqq wwwwwwww asdfasdf qwerqwer zxcvzxcv
asdasdasd qweqweqwe zxczxczxc 1qa2ws3ed 1qw23er4 q1q1q1q1 a1a1a1a1
147896325 963258741 456456456 789789789 321321321 159951159 357159852
1111aaaa 11111111a 0987654321 1029384756 5555555555 7777777777
88888888a 999999999 101010101 202020202 1234512345 1122334455
parol123 parol1234 parol12345 privet123 kotenok1 solnce123 qwerty007
lovelove loveyou1 ilovemylife imissyou neverland nevermind blink182
liverpool1 chelsea1 arsenal1 manutd manchesterunited barcelona1
pokemon1 naruto123 minecraft1 fortnite1 roblox123 starwars1 batman123
spiderman1 superman123 pikachu1 doraemon masterkey supersecret
mypassword1 mypassword123 newpassword newpass123 secret123 secret1234
administrator1 admin12345 admin1234 admin123 root1234 toor1234 test1234
test12345 testtest guest123 user1234 login123 pass1234 pass12345
ghbdtn ghbdtnbr gfhjkm gfhjkm123 vfvfgfgf vfrcbv123 yfnfif 'jnjgfhjkm
"""


def published() -> frozenset[str]:
    """The bundled public top-10k list, lower-cased."""
    lines = PUBLISHED_LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.lower() for line in lines if line)


def _expand() -> frozenset[str]:
    words = set(_BASES.split()) | set(_CYRILLIC.split()) | set(_FULL.split()) | published()
    entries = {w.lower() for w in words}
    # Years and doubled years are typed as passwords on their own ("19841984", "20152015").
    for year in range(1940, 2031):
        entries.add(f"{year}{year}")
        entries.add(f"{year}{year % 100:02d}")
    # Repeated two-digit pairs and digit runs of 8..12 characters.
    for a in range(10):
        for b in range(10):
            entries.add(f"{a}{b}" * 4)
    digits = "01234567890123456789"
    for length in range(8, 13):
        for start in range(10):
            run = digits[start : start + length]
            entries.add(run)
            entries.add(run[::-1])
    return frozenset(entries)


COMMON_PASSWORDS: frozenset[str] = _expand()
